//! `cpis bench`: load generators against a running mesh.

use clap::Args;

use crate::failure::Failure;
use crate::output::Output;

/// `cpis bench ...`
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    #[command(flatten)]
    remote: crate::remote::Remote,
}

/// Runs `cpis bench ...`.
pub(crate) fn run(args: BenchArgs, _output: Output) -> Result<(), Failure> {
    let _ = args.remote;
    Err(Failure::usage("`cpis bench` is being built"))
}
