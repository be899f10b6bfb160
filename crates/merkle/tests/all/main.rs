//! Integration tests of cpis-merkle, in one binary to keep link time down.

mod checkpoint;
mod common;
mod kat;
mod note;
mod oracle;
mod proofs;
mod stored;
