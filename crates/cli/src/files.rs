//! Writing the command's own files.

use std::io::Write;
use std::path::Path;

use crate::failure::Failure;

/// Writes `bytes` to `path` atomically (a temporary file renamed into place), readable and
/// writable by its owner only: sessions and keys.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(&tmp)
        .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| Failure::io(path, e))
}
