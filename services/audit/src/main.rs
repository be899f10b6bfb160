//! The `cpis-audit` binary: the audit service as its own process.

cpis_mesh::global_allocator!();

#[tokio::main]
async fn main() -> std::process::ExitCode {
    cpis_mesh::run_main::<cpis_audit::Audit>().await
}
