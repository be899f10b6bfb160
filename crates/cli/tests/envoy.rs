//! `cpis envoy render`: the chart ships the Kubernetes render, and it must be current.

use std::path::Path;
use std::process::Command;

fn cpis(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cpis"))
        .args(args)
        .output()
        .expect("run cpis");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_charts_edge_config_is_the_current_kubernetes_render() {
    let (ok, rendered, err) = cpis(&["envoy", "render", "--target", "kubernetes"]);
    assert!(ok, "{err}");
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/cpis/files/envoy.yaml");
    let shipped = std::fs::read_to_string(&chart).expect("the chart's envoy.yaml");
    assert!(
        shipped == rendered,
        "charts/cpis/files/envoy.yaml is out of date: run \
         `cargo run -p cpis-cli -- envoy render --target kubernetes --out charts/cpis/files/envoy.yaml`"
    );
}

#[test]
fn overrides_reach_the_render_and_bad_ones_are_refused() {
    let (ok, yaml, err) = cpis(&[
        "envoy",
        "render",
        "--listen",
        "127.0.0.1:18443",
        "--upstream",
        "audit=127.0.0.1:16055",
        "--no-tracing",
    ]);
    assert!(ok, "{err}");
    assert!(yaml.contains("port_value: 18443"), "{yaml}");
    assert!(yaml.contains("port_value: 16055"), "{yaml}");
    assert!(
        !yaml.contains("opentelemetry"),
        "tracing without a collector"
    );

    let (ok, _, err) = cpis(&["envoy", "render", "--upstream", "ledger=1.2.3.4:1"]);
    assert!(!ok);
    assert!(err.contains("not a workload"), "{err}");
    let (ok, _, err) = cpis(&["envoy", "render", "--admin", "0.0.0.0:9901"]);
    assert!(!ok);
    assert!(err.to_lowercase().contains("loopback"), "{err}");
}
