//! The RPC handlers: validate, authorise, ask the flag registry, store, answer.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cpis_domain::RetentionPolicy;
use cpis_mesh::client::MeshChannel;
use cpis_mesh::deadline::Deadline;
use cpis_mesh::nhs_hash::NhsHasher;
use cpis_mesh::outbox::OutboxNotifier;
use cpis_mesh::token::TokenVerifier;
use cpis_mesh::{ApiError, Caller};
use cpis_proto::attendance::attendance_service_server::AttendanceService;
use cpis_proto::attendance::{
    AttendanceSummary, ListAttendancesRequest, ListAttendancesResponse, RecordAttendanceRequest,
    RecordAttendanceResponse,
};
use cpis_proto::common::{self, FlagState};
use cpis_proto::flags::GetFlagsRequest;
use cpis_proto::flags::flag_registry_service_client::FlagRegistryServiceClient;
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::convert::{date, now_us, principal, timestamp};
use crate::error::FlagsError;
use crate::events;
use crate::retention;
use crate::store::{self, AttendanceStore, NewAttendance, Recording, RequestKey, StoreError};
use crate::validate::{self, Check};

/// How long a check's answer is replayed for a retry with the same request id.
pub(crate) const REPLAY_WINDOW_US: i64 = 24 * 3600 * 1_000_000;

/// The attendance service's handlers over a store.
#[derive(Clone)]
pub struct AttendanceApi<S> {
    pub(crate) store: S,
    pub(crate) tokens: TokenVerifier,
    pub(crate) flags: FlagRegistryServiceClient<MeshChannel>,
    pub(crate) flags_deadline: Duration,
    pub(crate) nhs_hasher: NhsHasher,
    /// Which flags keep a child's attendances.
    pub(crate) retention: RetentionPolicy,
    /// Wakes the outbox relay, when this process runs one.
    pub(crate) outbox_notifier: Option<OutboxNotifier>,
}

/// How a check's answer shows one of the child's attendances.
fn summary(a: &store::AttendanceSummary) -> AttendanceSummary {
    AttendanceSummary {
        arrival_time: Some(timestamp(a.arrival_us)),
        care_setting: Some(common::CareSetting {
            organisation: Some(common::OdsCode {
                value: a.organisation.clone(),
            }),
            site: a.site.clone().unwrap_or_default(),
            setting_type: a.setting_type,
            name: a.setting_name.clone(),
            phone: String::new(),
        }),
    }
}

/// The domain's state of a wire flag state (unspecified: none).
fn domain_state(state: i32) -> Option<cpis_domain::FlagState> {
    match FlagState::try_from(state).ok()? {
        FlagState::Current => Some(cpis_domain::FlagState::Current),
        FlagState::RecentlyEnded => Some(cpis_domain::FlagState::RecentlyEnded),
        FlagState::History => Some(cpis_domain::FlagState::History),
        FlagState::Unspecified => None,
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// What a check keeps of its caller's deadline after asking the flag registry: time to
/// write the attendance and answer, so that the caller hears UNAVAILABLE (with the
/// clinician's message) rather than its own DEADLINE_EXCEEDED.
pub const FLAGS_MARGIN: Duration = Duration::from_millis(100);

/// How long a check may wait for the flag registry: the configured `flags_deadline`, or
/// less when the caller's deadline (`remaining`) ends sooner: what is left of it minus
/// [`FLAGS_MARGIN`], or a fifth of it when that is smaller, so that a short deadline still
/// leaves room to answer. Zero: no time to ask.
pub fn flags_budget(flags_deadline: Duration, remaining: Option<Duration>) -> Duration {
    match remaining {
        Some(left) => {
            let margin = FLAGS_MARGIN.min(left / 5);
            flags_deadline.min(left.saturating_sub(margin))
        }
        None => flags_deadline,
    }
}

impl<S: AttendanceStore> AttendanceApi<S> {
    /// The child's flags from the flag registry (history included), within `budget` (see
    /// [`flags_budget`]), asked on behalf of the user whose token is forwarded.
    async fn flags_of(
        &self,
        check: &Check,
        authorization: Option<MetadataValue<tonic::metadata::Ascii>>,
        budget: Duration,
    ) -> Result<Vec<common::Flag>, FlagsError> {
        if budget.is_zero() {
            // The caller's deadline leaves no time to ask: answering now is all it can use.
            return Err(FlagsError::Timeout(budget));
        }
        let mut request = Request::new(GetFlagsRequest {
            nhs_number: Some(common::NhsNumber {
                value: check.nhs_number.as_str().to_owned(),
            }),
            include_history: true,
        });
        if let Some(token) = authorization {
            request.metadata_mut().insert("authorization", token);
        }
        request.set_timeout(budget);
        let mut client = self.flags.clone();
        let answer = tokio::time::timeout(budget, client.get_flags(request))
            .await
            .map_err(|_| FlagsError::Timeout(budget))??;
        Ok(answer.into_inner().flags)
    }

    pub(crate) fn notify_outbox(&self) {
        if let Some(notifier) = &self.outbox_notifier {
            notifier.notify();
        }
    }

    async fn record(
        &self,
        request: Request<RecordAttendanceRequest>,
    ) -> Result<RecordAttendanceResponse, ApiError> {
        let user = self.tokens.verify_metadata(request.metadata()).await?;
        let now = now_us();
        let check = validate::check(request.get_ref(), now)?;
        // Refused before anything is looked up: flagged and unflagged children look alike.
        user.require(check.activity())?;
        user.require_organisation(&check.organisation)?;
        let caller = request.extensions().get::<Caller>().cloned();
        let authorization = request.metadata().get("authorization").cloned();
        let child = self.nhs_hasher.pseudonym(&check.nhs_number);
        let request_key = check.request_id.map(|request_id| RequestKey {
            request_id,
            user_id: user.user_id.clone(),
            now_us: now,
            expired_us: now.saturating_sub(REPLAY_WINDOW_US),
        });
        if let Some(key) = &request_key
            && let Some(answer) = self.replay(key).await?
        {
            tracing::info!(child = %child, "check replayed for its request id");
            return Ok(answer);
        }

        let budget = flags_budget(
            self.flags_deadline,
            request
                .extensions()
                .get::<Deadline>()
                .map(Deadline::remaining),
        );
        let all_flags = self.flags_of(&check, authorization, budget).await?;
        let shown: Vec<common::Flag> = all_flags
            .iter()
            .filter(|f| {
                matches!(
                    FlagState::try_from(f.state),
                    Ok(FlagState::Current | FlagState::RecentlyEnded)
                )
            })
            .cloned()
            .collect();
        let authority = |f: &common::Flag| {
            f.authority
                .as_ref()
                .and_then(|a| a.code.as_ref())
                .map(|c| c.value.clone())
                .unwrap_or_default()
        };
        let user_wire = principal(&user);
        let check_id = Uuid::now_v7();

        // Data minimisation: only a child the system holds a flag for (current, recently
        // ended, or in history within the retention window) is kept.
        let today = time::OffsetDateTime::now_utc().date();
        let retaining: Vec<&common::Flag> = all_flags
            .iter()
            .filter(|f| {
                domain_state(f.state).is_some_and(|state| {
                    self.retention
                        .retains(state, f.end_date.as_ref().and_then(date), today)
                })
            })
            .collect();
        // Until when these flags keep the child's attendances (this one and earlier ones):
        // the retention sweep deletes them afterwards.
        let retain_until_us = retention::retained_until(
            &self.retention,
            retaining
                .iter()
                .filter_map(|f| Some((domain_state(f.state)?, f.end_date.as_ref().and_then(date)))),
            now,
        );
        let attendance = (!retaining.is_empty()).then(|| NewAttendance {
            attendance_id: Uuid::now_v7(),
            nhs_number: check.nhs_number.as_str().to_owned(),
            organisation: check.organisation.as_str().to_owned(),
            site: Some(check.setting.site.clone()).filter(|s| !s.trim().is_empty()),
            setting_type: check.setting.setting_type,
            setting_name: check.setting.name.clone(),
            arrival_us: check.arrival_us,
            practitioner: user_wire.encode_to_vec(),
            flag_current: all_flags
                .iter()
                .any(|f| f.state == FlagState::Current as i32),
            record_us: now,
            authorities: retaining
                .iter()
                .map(|f| authority(f))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            retain_until_us,
        });
        let attendance_id = attendance.as_ref().map(|a| a.attendance_id);

        let mut outbox = vec![
            events::audit(
                check_id,
                &check,
                caller.as_ref(),
                &user_wire,
                now,
                format!(
                    "{} flag(s) shown; attendance {}",
                    shown.len(),
                    if attendance.is_some() {
                        "kept"
                    } else {
                        "not kept"
                    }
                ),
                attendance_id,
            )
            .map_err(store::StoreError::from)?,
        ];
        let mut notified = false;
        if let (true, Some(attendance_id)) = (check.setting_type.is_unscheduled(), attendance_id) {
            let mut by_authority: BTreeMap<String, Vec<common::Flag>> = BTreeMap::new();
            for flag in &shown {
                by_authority
                    .entry(authority(flag))
                    .or_default()
                    .push(flag.clone());
            }
            for (code, flags) in by_authority {
                outbox.push(
                    events::notice(&code, attendance_id, &check, &user_wire, now, flags)
                        .map_err(store::StoreError::from)?,
                );
                notified = true;
            }
        }
        let first = RecordAttendanceResponse {
            check_id: check_id.to_string(),
            flags: shown,
            recent_attendances: Vec::new(),
            authorities_notified: notified,
            check_time: Some(timestamp(now)),
        };
        let answer = |recent: &[store::AttendanceSummary]| RecordAttendanceResponse {
            recent_attendances: recent.iter().map(summary).collect(),
            ..first.clone()
        };
        let recording = Recording {
            attendance: attendance.as_ref(),
            events: &outbox,
            nhs_number: check.nhs_number.as_str(),
            request: request_key.as_ref(),
            retain_until_us,
        };
        let recent = match self
            .store
            .check(recording, |recent| answer(recent).encode_to_vec())
            .await
        {
            Ok(recent) => recent,
            // The same request id won a race with this call: answer as it did.
            Err(StoreError::RequestReplayed) => {
                if let Some(key) = &request_key
                    && let Some(answer) = self.replay(key).await?
                {
                    return Ok(answer);
                }
                return Err(StoreError::RequestReplayed.into());
            }
            Err(e) => return Err(e.into()),
        };
        self.notify_outbox();
        tracing::info!(
            child = %child,
            flags = first.flags.len(),
            kept = attendance_id.is_some(),
            notified,
            "checked"
        );
        Ok(answer(&recent))
    }

    /// The stored answer of an earlier check with `key`'s request id, if any.
    async fn replay(&self, key: &RequestKey) -> Result<Option<RecordAttendanceResponse>, ApiError> {
        let Some(bytes) = self.store.replay(key).await? else {
            return Ok(None);
        };
        RecordAttendanceResponse::decode(bytes.as_slice())
            .map(Some)
            .map_err(|_| {
                ApiError::Internal(format!(
                    "stored answer of {} does not decode",
                    key.request_id
                ))
            })
    }
}

#[tonic::async_trait]
impl<S: AttendanceStore> AttendanceService for AttendanceApi<S> {
    async fn record_attendance(
        &self,
        request: Request<RecordAttendanceRequest>,
    ) -> Reply<RecordAttendanceResponse> {
        Ok(Response::new(self.record(request).await?))
    }

    async fn list_attendances(
        &self,
        request: Request<ListAttendancesRequest>,
    ) -> Reply<ListAttendancesResponse> {
        Ok(Response::new(self.list(request).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flags_budget_is_the_configured_deadline_or_less_when_the_caller_has_less() {
        let ms = Duration::from_millis;
        assert_eq!(flags_budget(ms(2000), None), ms(2000));
        assert_eq!(flags_budget(ms(2000), Some(ms(30_000))), ms(2000));
        // The caller's deadline minus the margin.
        assert_eq!(flags_budget(ms(2000), Some(ms(1000))), ms(900));
        // A short deadline keeps a fifth of itself to answer.
        assert_eq!(flags_budget(ms(2000), Some(ms(400))), ms(320));
        assert_eq!(flags_budget(ms(2000), Some(Duration::ZERO)), Duration::ZERO);
    }
}
