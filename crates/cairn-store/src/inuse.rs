//! Which processes hold files open, read from `/proc/*/fd`: how a restore
//! finds a running HitKeep (or anything else) using a database it would
//! replace.

use std::fs;
use std::path::{Path, PathBuf};

/// A process holding one of the files open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// Its pid.
    pub pid: u32,
    /// Its command name (`/proc/PID/comm`).
    pub comm: String,
    /// The file it holds.
    pub path: PathBuf,
}

/// Every other process that has one of `paths` open. Processes whose fds
/// cannot be read (another user's, without privileges) are skipped.
pub fn holders(paths: &[PathBuf]) -> Vec<Holder> {
    let wanted: Vec<PathBuf> = paths
        .iter()
        .filter_map(|p| fs::canonicalize(p).ok())
        .collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            if let Some(hit) = wanted.iter().find(|w| w.as_path() == target.as_path()) {
                out.push(Holder {
                    pid,
                    comm: comm(&p.path()),
                    path: hit.clone(),
                });
                break;
            }
        }
    }
    out
}

fn comm(proc_dir: &Path) -> String {
    fs::read_to_string(proc_dir.join("comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_child_holding_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("held.db");
        fs::write(&f, b"x").unwrap();
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("exec 3<'{}'; exec sleep 30", f.display()))
            .spawn()
            .unwrap();
        let mut found = Vec::new();
        for _ in 0..100 {
            found = holders(std::slice::from_ref(&f));
            if !found.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].pid, child.id());
        assert!(holders(&[dir.path().join("nobody-holds-this")]).is_empty());
    }
}
