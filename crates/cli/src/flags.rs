//! `cpis flags`: a local authority's flags against a running flag registry.

use clap::Args;

use crate::failure::Failure;
use crate::output::Output;

/// `cpis flags ...`
#[derive(Debug, Args)]
pub(crate) struct FlagsArgs {
    #[command(flatten)]
    remote: crate::remote::Remote,
}

/// Runs `cpis flags ...`.
pub(crate) fn run(args: FlagsArgs, _output: Output) -> Result<(), Failure> {
    let _ = args.remote;
    Err(Failure::usage("`cpis flags` is being built"))
}
