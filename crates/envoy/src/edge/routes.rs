//! The route table: one route per RPC of the contracts (its timeout, its retries), one per
//! gRPC service for methods newer than this configuration, 404 for everything else (gRPC
//! clients read HTTP 404 as UNIMPLEMENTED).

use crate::api::http::{
    DirectResponse, MaxStreamDuration, PreviousHostsPredicate, RetryCondition, RetryHostPredicate,
    RetryOn, RetryPolicy, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
};
use crate::api::{Any, Duration};
use crate::layout::Workload;
use crate::rpc::{ContractRpc, Pace};

/// A person is waiting: long enough for a check that traces and audits, short enough to
/// give up and follow local procedure.
const UNARY_TIMEOUT: Duration = Duration::secs(10);
/// A whole directory imported or exported in one call.
const BULK_UNARY_TIMEOUT: Duration = Duration::secs(120);
/// A client-streamed upload of a whole file of flags or persons.
const UPLOAD_TIMEOUT: Duration = Duration::secs(600);
/// An upload that stops sending for this long is abandoned.
const UPLOAD_IDLE_TIMEOUT: Duration = Duration::secs(60);
/// A live stream sends keep-alives while idle, at least every 30 s
/// (`notification.keep_alive`); four missed in a row mean it is gone.
const STREAM_IDLE_TIMEOUT: Duration = Duration::secs(120);
/// No timeout: a live stream lasts as long as its subscriber.
const NO_TIMEOUT: Duration = Duration::secs(0);

/// Retries: two more attempts on another host where there is one, each with its own
/// timeout, within the route's overall timeout.
const NUM_RETRIES: u32 = 2;
const PER_TRY_TIMEOUT: Duration = Duration::secs(3);

/// Only failures where the service produced no answer: UNAVAILABLE (the service's own
/// "try again"), a failed connection, a refused or reset stream.
const RETRY_ON: [RetryCondition; 4] = [
    RetryCondition::Unavailable,
    RetryCondition::ConnectFailure,
    RetryCondition::RefusedStream,
    RetryCondition::Reset,
];

/// The edge's route table, for the RPCs of the contracts.
pub(crate) fn route_config(rpcs: &[ContractRpc]) -> RouteConfiguration {
    let mut routes: Vec<Route> = rpcs.iter().map(rpc_route).collect();
    routes.extend(Workload::ALL.into_iter().map(service_route));
    routes.push(Route {
        name: "unknown".to_owned(),
        matcher: RouteMatch {
            path: None,
            prefix: Some("/".to_owned()),
        },
        route: None,
        direct_response: Some(DirectResponse { status: 404 }),
    });
    RouteConfiguration {
        name: "edge",
        virtual_hosts: vec![VirtualHost {
            name: "cpis",
            domains: vec!["*"],
            routes,
        }],
    }
}

fn rpc_route(rpc: &ContractRpc) -> Route {
    let action = if rpc.server_streaming {
        RouteAction {
            timeout: NO_TIMEOUT,
            idle_timeout: Some(STREAM_IDLE_TIMEOUT),
            max_stream_duration: None,
            ..action(rpc.workload, NO_TIMEOUT)
        }
    } else if rpc.client_streaming {
        RouteAction {
            idle_timeout: Some(UPLOAD_IDLE_TIMEOUT),
            ..action(rpc.workload, UPLOAD_TIMEOUT)
        }
    } else if rpc.pace == Pace::Bulk {
        action(rpc.workload, BULK_UNARY_TIMEOUT)
    } else {
        action(rpc.workload, UNARY_TIMEOUT)
    };
    Route {
        name: rpc.name.clone(),
        matcher: RouteMatch {
            path: Some(rpc.path()),
            prefix: None,
        },
        route: Some(RouteAction {
            retry_policy: rpc.is_retried().then(retry_policy),
            ..action
        }),
        direct_response: None,
    }
}

/// A method of a known service that the contracts here do not list yet: sent on with the
/// unary timeout and never retried, since nobody has said it is idempotent.
fn service_route(workload: Workload) -> Route {
    Route {
        name: workload.service_name().to_owned(),
        matcher: RouteMatch {
            path: None,
            prefix: Some(format!("/{}/", workload.service_name())),
        },
        route: Some(action(workload, UNARY_TIMEOUT)),
        direct_response: None,
    }
}

fn action(workload: Workload, timeout: Duration) -> RouteAction {
    RouteAction {
        cluster: workload.name().to_owned(),
        timeout,
        idle_timeout: None,
        // A client's grpc-timeout shortens the call, never lengthens it past the route's.
        max_stream_duration: Some(MaxStreamDuration {
            grpc_timeout_header_max: timeout,
        }),
        retry_policy: None,
    }
}

fn retry_policy() -> RetryPolicy {
    RetryPolicy {
        retry_on: RetryOn(RETRY_ON.to_vec()),
        num_retries: NUM_RETRIES,
        per_try_timeout: PER_TRY_TIMEOUT,
        retry_host_predicate: vec![RetryHostPredicate {
            name: "envoy.retry_host_predicates.previous_hosts",
            typed_config: Any::new(PreviousHostsPredicate {}),
        }],
        host_selection_retry_max_attempts: 3,
    }
}
