//! Helpers: temp dirs, running `cairn`, comparing trees, the generator.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `cairn` binary under test.
pub fn cairn_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cairn"))
}

/// A scratch area with a store path.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn store(&self) -> PathBuf {
        self.path("store")
    }

    /// Runs `cairn --store STORE args...`.
    pub fn cairn(&self, args: &[&str]) -> Output {
        Command::new(cairn_bin())
            .arg("--store")
            .arg(self.store())
            .args(args)
            .env_remove("CAIRN_STORE")
            .env_remove("HITKEEP_DATA_PATH")
            .output()
            .expect("run cairn")
    }

    /// Runs cairn and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cairn(args);
        assert!(
            out.status.success(),
            "cairn {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).expect("utf8")
    }

    /// Runs cairn, asserts failure with a one-line error; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cairn(args);
        assert!(!out.status.success(), "cairn {args:?} should fail");
        let err = String::from_utf8(out.stderr).expect("utf8");
        assert!(!err.contains("panicked"), "panic: {err}");
        assert!(!err.contains("RUST_BACKTRACE"), "backtrace: {err}");
        err
    }

    /// Takes a snapshot with --json and returns it parsed.
    pub fn snapshot(&self, data: &Path) -> serde_json::Value {
        let out = self.ok(&["--json", "snapshot", "--data-path", data.to_str().unwrap()]);
        serde_json::from_str(&out).expect("snapshot json")
    }
}

/// Every file, dir and symlink under `root`: relative path -> (kind, mode, content or link target).
pub fn tree_digest(root: &Path) -> BTreeMap<PathBuf, (String, u32, Vec<u8>, i64)> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (String, u32, Vec<u8>, i64)>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let m = fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().to_owned();
        let mode = m.permissions().mode() & 0o7777;
        if m.file_type().is_symlink() {
            let t = fs::read_link(&p).unwrap();
            out.insert(
                rel,
                (
                    "symlink".into(),
                    0,
                    t.into_os_string().into_encoded_bytes(),
                    0,
                ),
            );
        } else if m.is_dir() {
            out.insert(rel, ("dir".into(), mode, Vec::new(), 0));
            walk(root, &p, out);
        } else {
            let content = fs::read(&p).unwrap();
            let hash = blake3::hash(&content).as_bytes().to_vec();
            out.insert(rel, ("file".into(), mode, hash, m.mtime()));
        }
    }
}

/// Asserts two trees are identical in names, kinds, modes, contents and file mtimes.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let da = tree_digest(a);
    let db = tree_digest(b);
    let ka: Vec<_> = da.keys().collect();
    let kb: Vec<_> = db.keys().collect();
    assert_eq!(ka, kb, "different paths");
    for (k, va) in &da {
        assert_eq!(va, &db[k], "{} differs", k.display());
    }
}

/// Whether the Python generator can run here (python3 with duckdb).
pub fn have_duckdb() -> bool {
    Command::new("python3")
        .args(["-c", "import duckdb"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Path of the generator script.
pub fn generator() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/hitkeep_gen.py")
}

/// Runs the generator with `args`; panics with its output on failure.
/// Tests that need DuckDB require it: CI installs it (see .ci/run).
pub fn gen(args: &[&str]) {
    assert!(
        have_duckdb(),
        "python3 with the duckdb package is required (scripts/setup.sh installs it)"
    );
    let out = Command::new("python3")
        .arg(generator())
        .args(args)
        .output()
        .expect("run generator");
    assert!(
        out.status.success(),
        "generator {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Copies a tree (preserving modes and mtimes) with `cp -a`.
pub fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

/// Size of all files under `dir`, skipping the `index` cache at the top.
pub fn store_bytes(dir: &Path) -> u64 {
    fn sum(p: &Path) -> u64 {
        let mut n = 0;
        for e in fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                n += sum(&e.path());
            } else {
                n += m.size();
            }
        }
        n
    }
    let mut n = 0;
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_name() == "index" {
            continue;
        }
        let m = e.metadata().unwrap();
        n += if m.is_dir() { sum(&e.path()) } else { m.size() };
    }
    n
}
