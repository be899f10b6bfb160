//! A service binary run as a real process: configured by environment variables as in a
//! deployment, its JSON logs captured, stopped with SIGTERM.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{TEST_HASH_KEY, TestPki};

/// A running service process.
#[derive(Debug)]
pub struct ServiceProcess {
    child: Child,
    logs: Arc<Mutex<Vec<serde_json::Value>>>,
    /// Its mTLS address.
    pub addr: SocketAddr,
    /// Its admin address.
    pub admin_addr: SocketAddr,
}

impl ServiceProcess {
    /// Starts `binary` as workload `workload` with a bundle from `pki`, ephemeral loopback
    /// ports, JSON logs and `extra` variables; waits for its "serving" log line.
    pub fn start(binary: &str, workload: &str, pki: &TestPki, extra: &[(&str, String)]) -> Self {
        let files = pki.workload(workload);
        let mut command = Command::new(binary);
        // Only what a deployment would set: the test's own CPIS_TEST_* must not leak in.
        for (name, _) in std::env::vars().filter(|(k, _)| k.starts_with("CPIS_")) {
            command.env_remove(name);
        }
        command
            .env("CPIS_TLS_CA_FILE", &files.ca)
            .env("CPIS_TLS_CERT_FILE", &files.cert)
            .env("CPIS_TLS_KEY_FILE", &files.key)
            .env("CPIS_SERVER_LISTEN", "127.0.0.1:0")
            .env("CPIS_SERVER_ADMIN_LISTEN", "127.0.0.1:0")
            .env("CPIS_PRIVACY_NHS_HASH_KEY", TEST_HASH_KEY)
            .env("CPIS_TELEMETRY_LOG_FORMAT", "json")
            .env("CPIS_TELEMETRY_LOG_FILTER", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in extra {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("spawn the service binary");
        let stderr = child.stderr.take().expect("piped stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "unparsed": line }));
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(value);
            }
        });
        let mut process = Self {
            child,
            logs,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            admin_addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        let serving = process
            .wait_for_log(Duration::from_secs(30), |l| l["message"] == "serving")
            .unwrap_or_else(|| panic!("no `serving` log line; logs: {:?}", process.logs()));
        process.addr = serving["addr"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .expect("addr");
        process.admin_addr = serving["admin_addr"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .expect("admin_addr");
        process
    }

    /// Every log line so far, parsed (a line that is not JSON is `{"unparsed": line}`).
    pub fn logs(&self) -> Vec<serde_json::Value> {
        self.logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits up to `timeout` for a log line matching `predicate`.
    pub fn wait_for_log(
        &self,
        timeout: Duration,
        predicate: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let until = Instant::now() + timeout;
        loop {
            if let Some(line) = self.logs().into_iter().find(&predicate) {
                return Some(line);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit.
    pub fn terminate(mut self, timeout: Duration) -> ExitStatus {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let until = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the process") {
                return status;
            }
            if Instant::now() >= until {
                let _ = self.child.kill();
                panic!(
                    "the process did not stop within {timeout:?}; logs: {:?}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        // A test that failed midway must not leave a server running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `binary` with `args` and only the `env` given among `CPIS_*` variables (the test's own
/// must not leak in); returns its exit status and stderr.
pub fn run(binary: &str, args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String) {
    let mut command = Command::new(binary);
    for (name, _) in std::env::vars().filter(|(k, _)| k.starts_with("CPIS_")) {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the service binary");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `binary` without a required variable and returns its exit status and stderr.
pub fn start_misconfigured(binary: &str, env: &[(&str, &str)]) -> (ExitStatus, String) {
    run(binary, &[], env)
}

/// The life of a service process as a deployment sees it: it serves health on its admin
/// port, a refused call is logged as JSON with the caller's trace id, and SIGTERM stops it
/// cleanly (exit 0) after reporting NOT_SERVING.
pub async fn assert_serves_and_stops(binary: &str, workload: &str, extra: &[(&str, String)]) {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let pki = TestPki::new();
    let process = ServiceProcess::start(binary, workload, &pki, extra);

    let admin = tonic::transport::Endpoint::from_shared(format!("http://{}", process.admin_addr))
        .expect("admin URI")
        .connect_lazy();
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let status = HealthClient::new(admin.clone())
            .check(HealthCheckRequest::default())
            .await
            .map(|r| r.into_inner().status)
            .ok();
        if status == Some(ServingStatus::Serving as i32) {
            break;
        }
        assert!(
            Instant::now() < until,
            "never SERVING: {status:?}; logs: {:?}",
            process.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A call no rule admits: refused, and the refusal is logged inside the caller's trace.
    let ehr = pki.org_system("RJ1", "ed-ehr");
    let channel = crate::client::raw_channel(
        format!("https://localhost:{}", process.addr.port())
            .parse()
            .expect("service URI"),
        &pki.tls(&ehr),
        rustls::pki_types::ServerName::try_from("localhost").expect("server name"),
        &crate::client::ChannelSettings::default(),
    );
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let mut request = tonic::Request::new(cpis_proto::audit::AppendRequest::default());
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-b7ad6b7169203331-01")
            .parse()
            .expect("traceparent"),
    );
    let status = cpis_proto::audit::audit_service_client::AuditServiceClient::new(channel)
        .append(request)
        .await
        .expect_err("no rule admits an organisation system to Append");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    let refused = process.wait_for_log(Duration::from_secs(5), |l| {
        l["message"] == "call refused" && l["span"]["trace_id"] == trace_id
    });
    assert!(
        refused.is_some(),
        "no JSON log of the refusal carrying the trace id; logs: {:?}",
        process.logs()
    );

    let logs = process.logs.clone();
    let status = process.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}; logs: {logs:?}");
    let logs = logs.lock().unwrap_or_else(PoisonError::into_inner).clone();
    assert!(
        logs.iter().any(|l| l["message"] == "stopped"),
        "no `stopped` log line: {logs:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l["message"] == "shutdown requested" && l["signal"] == "SIGTERM"),
        "SIGTERM not seen: {logs:?}"
    );
}

/// A process without the NHS-number hash key refuses to start, exit code 2, naming the
/// variable.
pub fn assert_refuses_bad_configuration(binary: &str) {
    let (status, stderr) = start_misconfigured(binary, &[("CPIS_SERVER_LISTEN", "127.0.0.1:0")]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("CPIS_PRIVACY_NHS_HASH_KEY"), "{stderr}");
}
