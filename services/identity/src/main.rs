//! The `cpis-identity` binary: the identity service as its own process; `cpis-identity
//! migrate` applies its database migrations and exits (for a Helm hook Job).

cpis_mesh::global_allocator!();

#[tokio::main]
async fn main() -> std::process::ExitCode {
    cpis_mesh::run_main::<cpis_identity::Identity>().await
}
