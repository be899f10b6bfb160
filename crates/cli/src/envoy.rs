//! `cpis envoy render`: the Envoy edge's configuration, generated from typed structs
//! (`cpis-envoy`), for one machine or a Kubernetes namespace.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use cpis_envoy::{EdgeLayout, Endpoint, Workload};

use crate::failure::Failure;
use crate::output::Output;

/// `cpis envoy ...`
#[derive(Debug, Args)]
pub(crate) struct EnvoyArgs {
    #[command(subcommand)]
    command: EnvoyCommand,
}

#[derive(Debug, Subcommand)]
enum EnvoyCommand {
    /// Print (or write with --out) the edge's bootstrap configuration as YAML.
    Render(RenderArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Target {
    /// One machine: the services on 127.0.0.1:50051-50055, the PKI of `cpis dev`.
    Local,
    /// A Kubernetes namespace: the chart's Services, certificates under /etc/cpis.
    Kubernetes,
}

#[derive(Debug, Args)]
struct RenderArgs {
    /// The layout to render.
    #[arg(long, value_enum, default_value = "local")]
    target: Target,
    /// Local target: the PKI directory (with `edge/tls.crt`, `edge/tls.key`, `edge/ca.crt`).
    #[arg(long, default_value = ".cpis/pki")]
    pki_dir: PathBuf,
    /// The namespace of the workloads' SPIFFE IDs (and, on Kubernetes, of their Services).
    #[arg(long, default_value = "cpis")]
    namespace: String,
    /// The SPIFFE trust domain.
    #[arg(long, default_value = "cpis.local")]
    trust_domain: String,
    /// Where organisation systems connect (HOST:PORT).
    #[arg(long, value_parser = endpoint)]
    listen: Option<Endpoint>,
    /// Envoy's admin interface (HOST:PORT, loopback only).
    #[arg(long, value_parser = endpoint)]
    admin: Option<Endpoint>,
    /// A service's address, as WORKLOAD=HOST:PORT (repeatable), e.g.
    /// `--upstream audit=127.0.0.1:6055`.
    #[arg(long = "upstream", value_parser = upstream)]
    upstreams: Vec<(Workload, Endpoint)>,
    /// The OpenTelemetry collector (HOST:PORT, OTLP/gRPC).
    #[arg(long, value_parser = endpoint, conflicts_with = "no_tracing")]
    otlp: Option<Endpoint>,
    /// Export no traces.
    #[arg(long)]
    no_tracing: bool,
    /// The organisations' CA bundle that client certificates must chain to.
    #[arg(long)]
    client_ca: Option<PathBuf>,
    /// Where the access log goes.
    #[arg(long)]
    access_log: Option<PathBuf>,
    /// Write to this file instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn endpoint(text: &str) -> Result<Endpoint, String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("`{text}`: write HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{text}`: the port must be a number up to 65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("`{text}`: write HOST:PORT"));
    }
    Ok(Endpoint::new(host, port))
}

fn upstream(text: &str) -> Result<(Workload, Endpoint), String> {
    let (name, address) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: write WORKLOAD=HOST:PORT"))?;
    let workload = Workload::ALL
        .into_iter()
        .find(|w| w.name() == name)
        .ok_or_else(|| {
            format!(
                "`{name}` is not a workload; one of: {}",
                Workload::ALL.map(Workload::name).join(", ")
            )
        })?;
    Ok((workload, endpoint(address)?))
}

/// Runs `cpis envoy ...`.
pub(crate) fn run(args: EnvoyArgs, output: Output) -> Result<(), Failure> {
    let EnvoyCommand::Render(args) = args.command;
    let mut layout = match args.target {
        Target::Local => EdgeLayout::local(&args.pki_dir),
        Target::Kubernetes => EdgeLayout::kubernetes(&args.namespace, &args.trust_domain),
    };
    layout.namespace.clone_from(&args.namespace);
    layout.trust_domain.clone_from(&args.trust_domain);
    if let Some(listen) = args.listen {
        layout.listener = listen;
    }
    if let Some(admin) = args.admin {
        layout.admin = admin;
    }
    for (workload, at) in args.upstreams {
        *layout.upstreams.get_mut(workload) = at;
    }
    if args.no_tracing {
        layout.otlp_collector = None;
    } else if let Some(otlp) = args.otlp {
        layout.otlp_collector = Some(otlp);
    }
    if let Some(ca) = args.client_ca {
        layout.client_ca_file = ca;
    }
    if let Some(log) = args.access_log {
        layout.access_log_path = log;
    }
    let yaml = cpis_envoy::render(&layout).map_err(|e| Failure::usage(e.to_string()))?;
    match args.out {
        Some(path) => {
            std::fs::write(&path, yaml).map_err(|e| Failure::io(&path, e))?;
            output.line(&format!("wrote {}", path.display()));
            Ok(())
        }
        None => {
            use std::io::Write;
            std::io::stdout()
                .write_all(yaml.as_bytes())
                .map_err(|e| Failure::internal(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_upstreams_parse() {
        assert_eq!(
            endpoint("127.0.0.1:8443"),
            Ok(Endpoint::new("127.0.0.1", 8443))
        );
        assert_eq!(endpoint("[::1]:9901"), Ok(Endpoint::new("::1", 9901)));
        assert!(endpoint("localhost").unwrap_err().contains("HOST:PORT"));
        assert!(endpoint("h:99999").is_err());
        let (w, e) = upstream("flag-registry=10.0.0.2:50052").unwrap();
        assert_eq!(w, Workload::FlagRegistry);
        assert_eq!(e.port, 50052);
        assert!(
            upstream("ledger=1.2.3.4:1")
                .unwrap_err()
                .contains("identity")
        );
    }
}
