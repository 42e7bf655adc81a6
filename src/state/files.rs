//! Files of the data directory that hold secrets (tokens, passwords, keys): written whole or not
//! at all, readable only by the daemon's user.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Write `contents` and a newline to `path` atomically with mode 0600: to `PATH.tmp`, fsync,
/// rename, fsync of the directory (a crash leaves the old file or the new one, never a part).
pub fn write_secret_file(path: &Path, contents: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
