//! The `cpis-audit` binary: the audit service as its own process.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    cpis_mesh::run_main::<cpis_audit::Audit>().await
}
