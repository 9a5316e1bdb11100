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

// ---------------------------------------------------------------------------
// HitKeep awareness (hitkeep_boundary, hitkeep_restore, live_capture):
// cached generated data paths, runs with env and stdin, store state,
// DuckDB row counts.

/// A generated data path, built once per generator version and `key` and
/// kept under `target/tmp/hitkeep-fixtures`, so tests copy it (seconds
/// saved per test) instead of generating it again. `build` gets an empty
/// directory to generate into; the fixture appears (by rename) only when
/// complete, so concurrent test runs can share it.
pub fn cached_fixture(key: &str, build: impl FnOnce(&Path)) -> PathBuf {
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let script = fs::read(generator()).expect("read generator");
    let mut h = blake3::Hasher::new();
    h.update(&script);
    h.update(key.as_bytes());
    let hash = h.finalize().to_hex();
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hitkeep-fixtures");
    fs::create_dir_all(&base).unwrap();
    let dir = base.join(format!("{key}-{}", &hash[..16]));
    if dir.is_dir() {
        return dir;
    }
    let tmp = base.join(format!(".{key}-{}-{}", &hash[..16], std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).unwrap();
    build(&tmp);
    if fs::rename(&tmp, &dir).is_err() {
        assert!(dir.is_dir(), "could not place fixture {}", dir.display());
        let _ = fs::remove_dir_all(&tmp);
    }
    dir
}

/// A copy of the standard tiny generated data path (3 tenants, archives,
/// assets, imports; control-plane db inside) at `dest`.
pub fn tiny_data_path(dest: &Path) {
    let fx = cached_fixture("tiny-seed7", |d| {
        gen(&[
            "create",
            d.join("data").to_str().unwrap(),
            "--scale",
            "tiny",
            "--seed",
            "7",
        ])
    });
    copy_tree(&fx.join("data"), dest);
}

/// Ages a generated data path by `hours` simulated hours.
pub fn age(data: &Path, hours: u32, seed: u32) {
    let (hours, seed) = (hours.to_string(), seed.to_string());
    gen(&[
        "age",
        data.to_str().unwrap(),
        "--hours",
        &hours,
        "--seed",
        &seed,
    ]);
}

/// Runs `cairn --store STORE args...` with extra environment and stdin.
pub fn cairn_env(s: &Scratch, args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(cairn_bin());
    cmd.arg("--store")
        .arg(s.store())
        .args(args)
        .env_remove("CAIRN_STORE")
        .env_remove("CAIRN_FAILPOINT")
        .env_remove("HITKEEP_DATA_PATH")
        .env_remove("HITKEEP_DB_PATH")
        .env_remove("HITKEEP_ARCHIVE_PATH")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run cairn");
    let mut input = child.stdin.take().unwrap();
    // cairn may exit without reading: a broken pipe is fine.
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().expect("wait cairn")
}

/// Parses `cairn --json` output.
pub fn parse_json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("bad json ({e}): {out}"))
}

/// The store's durable state: every file and directory, with modes and
/// contents, except the `index` cache and the lock files (the holder
/// record of `lock` changes with every command; `prune.lock` is created
/// by whatever takes it first).
pub fn store_state(store: &Path) -> BTreeMap<PathBuf, (String, u32, Vec<u8>, i64)> {
    tree_digest(store)
        .into_iter()
        .filter(|(p, _)| {
            !p.starts_with("index") && p != Path::new("lock") && p != Path::new("prune.lock")
        })
        .collect()
}

/// Relative paths of the regular files under `root`.
pub fn files_under(root: &Path) -> Vec<PathBuf> {
    tree_digest(root)
        .into_iter()
        .filter(|(_, v)| v.0 == "file")
        .map(|(p, _)| p)
        .collect()
}

/// Whether a file is a DuckDB database (`DUCK` at offset 8).
pub fn is_duckdb_file(p: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 12];
    fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head[8..12] == b"DUCK"
}

/// For each database: opened read-only in DuckDB, `SELECT count(*)` of
/// every table (`schema.table` → rows). Panics if one does not open.
pub fn duckdb_counts(dbs: &[PathBuf]) -> Vec<BTreeMap<String, i64>> {
    const SNIPPET: &str = r#"
import duckdb, json, sys
out = []
for p in sys.argv[1:]:
    con = duckdb.connect(p, read_only=True)
    tabs = con.execute("SELECT schema_name, table_name FROM duckdb_tables() ORDER BY 1, 2").fetchall()
    out.append({f"{s}.{t}": con.execute(f'SELECT count(*) FROM "{s}"."{t}"').fetchone()[0] for s, t in tabs})
    con.close()
print(json.dumps(out))
"#;
    if dbs.is_empty() {
        return Vec::new();
    }
    let out = Command::new("python3")
        .arg("-c")
        .arg(SNIPPET)
        .args(dbs)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "DuckDB could not read {dbs:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("counts json")
}

// ---------------------------------------------------------------------------
// Lifecycle (forget, prune, purge): seeded randomness, pack sizes, small
// stores.

/// splitmix64: small, seeded, reproducible.
pub struct SeededRng(pub u64);

impl SeededRng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// `n` incompressible bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

/// Total size of the pack files of a store.
pub fn pack_bytes(store: &Path) -> u64 {
    fs::read_dir(store.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// Sets a new store's pack target to 1 MiB (the smallest the config
/// allows), so small data paths still make many packs.
pub fn small_packs(store: &Path) {
    let cfg_path = store.join("config");
    let mut cfg = cairn_format::StoreConfig::decode(&fs::read(&cfg_path).unwrap()).unwrap();
    cfg.pack_target = 1 << 20;
    fs::write(&cfg_path, cfg.encode().unwrap()).unwrap();
}

/// Ids of the snapshots in the store, oldest first (from `list --json`).
pub fn snapshot_ids(s: &Scratch) -> Vec<String> {
    parse_json(&s.ok(&["--json", "list"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

/// Restores snapshot `id` into a fresh directory `dest`.
pub fn restore_to(s: &Scratch, id: &str, dest: &Path) {
    s.ok(&[
        "restore",
        "--snapshot",
        id,
        "--target",
        dest.to_str().unwrap(),
    ]);
}

/// A trial count (or seed) from the environment variable `name`, else
/// `default` (CI runs the defaults; the full counts are set locally).
pub fn env_count(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
