//! A store location that is a local directory (a path or `file://`).
//! Objects are files; writes go through `tmp/` and are atomic.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::atomic;
use crate::backend::{Backend, ObjectInfo};
use crate::error::{io_at, AtPath, Result};

/// Objects as files below a directory.
#[derive(Clone, Debug)]
pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    /// The directory `root` (created on the first write).
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Writes through a temp file in `root/tmp`, creating directories.
    fn write(&self, name: &str, bytes: &[u8], replace: bool) -> Result<bool> {
        let dest = self.path(name);
        let tmp = self.root.join("tmp");
        fs::create_dir_all(&tmp).at(&tmp)?;
        if let Some(parent) = dest.parent() {
            if !parent.exists() {
                fs::create_dir_all(parent).at(parent)?;
                if let Some(grand) = parent.parent() {
                    atomic::sync_dir(grand)?;
                }
            }
        }
        match atomic::write_file(&tmp, &dest, bytes, replace) {
            Ok(()) => Ok(true),
            Err(e) if !replace && e.cause.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

impl Backend for LocalDir {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn is_remote(&self) -> bool {
        false
    }

    fn get(&self, name: &str) -> Result<Vec<u8>> {
        let path = self.path(name);
        Ok(fs::read(&path).at(&path)?)
    }

    fn get_range(&self, name: &str, range: Range<u64>) -> Result<Vec<u8>> {
        let path = self.path(name);
        let f = File::open(&path).at(&path)?;
        let mut buf = vec![0u8; (range.end - range.start) as usize];
        f.read_exact_at(&mut buf, range.start).at(&path)?;
        Ok(buf)
    }

    fn size(&self, name: &str) -> Result<Option<u64>> {
        let path = self.path(name);
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_at(&path, e)),
        }
    }

    fn put(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        self.write(name, &bytes, true).map(|_| ())
    }

    fn put_new(&self, name: &str, bytes: Vec<u8>) -> Result<bool> {
        if self.path(name).exists() {
            return Ok(false);
        }
        self.write(name, &bytes, false)
    }

    fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>> {
        let root = self.path(dir);
        let mut out = Vec::new();
        let mut stack = vec![(root.clone(), String::new())];
        while let Some((path, prefix)) = stack.pop() {
            let entries = match fs::read_dir(&path) {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound && path == root => return Ok(out),
                Err(e) => return Err(io_at(&path, e)),
            };
            for e in entries {
                let e = e.at(&path)?;
                let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let ft = e.file_type().at(e.path())?;
                if ft.is_dir() {
                    stack.push((e.path(), format!("{prefix}{name}/")));
                } else if ft.is_file() {
                    let size = e.metadata().at(e.path())?.len();
                    out.push(ObjectInfo {
                        name: format!("{prefix}{name}"),
                        size,
                    });
                }
            }
        }
        Ok(out)
    }

    fn create_dir(&self, name: &str) -> Result<()> {
        let path = self.path(name);
        Ok(fs::create_dir_all(&path).at(&path)?)
    }

    fn delete(&self, name: &str) -> Result<()> {
        let path = self.path(name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_at(&path, e)),
        }
        if let Some(parent) = path.parent() {
            atomic::sync_dir(parent)?;
        }
        Ok(())
    }
}
