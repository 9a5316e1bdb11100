//! Atomic file writes: temp file, fsync, rename (or link), fsync of the
//! directory. A crash leaves either the old state or the new one, plus at
//! worst a stray temp file in the temp directory (`STORE/tmp`), which is
//! never read.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{AtPath, IoAt};

/// Result of a file operation, naming the path on failure.
pub type Result<T> = std::result::Result<T, IoAt>;

/// A fresh, unique temp path in `dir`.
pub fn temp_path(dir: &Path, stem: &str) -> PathBuf {
    let mut r = [0u8; 8];
    let _ = getrandom::fill(&mut r);
    dir.join(format!(
        "{stem}.{}.{}.tmp",
        std::process::id(),
        hex::encode(r)
    ))
}

/// fsyncs a directory so a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Creates a temp file for writing.
pub fn create_temp(tmp_dir: &Path, stem: &str) -> Result<(File, PathBuf)> {
    let path = temp_path(tmp_dir, stem);
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .at(&path)?;
    Ok((f, path))
}

/// Moves a finished, fsynced temp file into place. With `replace` false the
/// move fails if `dest` exists (a hard link, then the temp is unlinked).
pub fn commit(temp: &Path, dest: &Path, replace: bool) -> Result<()> {
    if replace {
        fs::rename(temp, dest).at(dest)?;
    } else {
        let linked = fs::hard_link(temp, dest).at(dest);
        let _ = fs::remove_file(temp);
        linked?;
    }
    if let Some(parent) = dest.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Writes `bytes` to `dest` atomically through a temp file in `tmp_dir`
/// (same file system).
pub fn write_file(tmp_dir: &Path, dest: &Path, bytes: &[u8], replace: bool) -> Result<()> {
    let (mut f, temp) = create_temp(tmp_dir, "write")?;
    let written = f.write_all(bytes).and_then(|_| f.sync_all()).at(&temp);
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    drop(f);
    commit(&temp, dest, replace)
}
