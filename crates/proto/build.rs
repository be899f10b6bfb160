//! Generates the Rust code of the CP-IS contracts from `proto/` at build time.
//!
//! `protox` parses the `.proto` files in pure Rust (no system `protoc`), the
//! descriptor set is written to `$OUT_DIR/cpis_descriptor.bin` for reflection and
//! Envoy, and `tonic-prost-build` turns it into messages, clients and servers.

use std::error::Error;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs, io};

// protox re-exports the prost it builds descriptors with.
use protox::prost::Message as _;

/// The contracts, relative to this crate (build scripts run in the crate's directory).
const PROTO_ROOT: &str = "../../proto";

fn main() {
    if let Err(error) = run() {
        // protox errors name the file, line and column: show them as they are.
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let root = Path::new(PROTO_ROOT);
    let mut files = Vec::new();
    collect_protos(root, &mut files)?;
    files.sort();

    // Cargo build-script protocol lines go to standard output.
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "cargo:rerun-if-changed={PROTO_ROOT}")?;
    for file in &files {
        writeln!(stdout, "cargo:rerun-if-changed={}", file.display())?;
    }

    // Names relative to the include root, as `import` statements spell them.
    let names = files
        .iter()
        .map(|file| file.strip_prefix(root).map(Path::to_path_buf))
        .collect::<Result<Vec<_>, _>>()?;
    let fds = protox::compile(&names, [root])?;

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("cpis_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}

/// Every `.proto` file under `dir`, recursively.
fn collect_protos(dir: &Path, files: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, files)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            files.push(path);
        }
    }
    Ok(())
}
