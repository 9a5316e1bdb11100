//! Bad input: every mistake a user (or a damaged disk) can make gives one
//! clear error line naming the thing, a non-zero exit, no panic, and leaves
//! the store byte-for-byte as it was (the `index/` cache aside).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cairn_format::pack::{self, BlobKind};
use cairn_format::{StoreConfig, FORMAT_VERSION};

use crate::common::*;

/// Every file and directory under a store except the top-level `index/`
/// cache: relative path -> (kind, mode, blake3 of content).
fn store_digest(store: &Path) -> BTreeMap<PathBuf, (char, u32, [u8; 32])> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (char, u32, [u8; 32])>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_owned();
            if rel == Path::new("index") {
                continue;
            }
            let m = fs::symlink_metadata(&p).unwrap();
            let mode = m.mode() & 0o7777;
            if m.is_dir() {
                out.insert(rel, ('d', mode, [0; 32]));
                walk(root, &p, out);
            } else {
                let h = *blake3::hash(&fs::read(&p).unwrap()).as_bytes();
                out.insert(rel, ('f', mode, h));
            }
        }
    }
    let mut out = BTreeMap::new();
    if store.exists() {
        walk(store, store, &mut out);
    }
    out
}

/// Asserts a failed run: non-zero exit, no panic or backtrace, exactly one
/// `cairn: error:` line, and nothing else but warnings and index notes.
/// Returns the error line.
fn one_error(out: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{what}: should fail\n{err}");
    assert_eq!(out.status.code(), Some(1), "{what}: exit code\n{err}");
    assert!(!err.contains("panicked"), "{what}: panic\n{err}");
    assert!(!err.contains("RUST_BACKTRACE"), "{what}: backtrace\n{err}");
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("cairn: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{what}: want one error line\n{err}");
    for l in err.lines() {
        assert!(
            l.starts_with("cairn: error:")
                || l.starts_with("cairn: warning:")
                || l.starts_with("cairn: index "),
            "{what}: stray stderr line {l:?}\n{err}"
        );
    }
    errors[0].to_string()
}

/// Like [`one_error`], and stderr is that single line and nothing else.
fn only_error(out: &Output, what: &str) -> String {
    let line = one_error(out, what);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{what}: {err}");
    line
}

/// Runs `cairn` with exactly `args` (no `--store` added), no store in the env.
fn cairn_raw(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(cairn_bin())
        .args(args)
        .env_remove("CAIRN_STORE")
        .env_remove("HITKEEP_DATA_PATH")
        .output()
        .expect("run cairn")
}

/// A command prefix under which permission bits bind: nothing for an
/// ordinary user; for root, `setpriv` dropping the two capabilities that
/// let root read and search anything (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH).
fn unprivileged_prefix(probe_dir: &Path) -> Vec<String> {
    if fs::metadata(probe_dir).unwrap().uid() != 0 {
        return Vec::new();
    }
    vec![
        "setpriv".into(),
        "--bounding-set=-dac_override,-dac_read_search".into(),
    ]
}

/// Runs `cairn --store STORE args` under [`unprivileged_prefix`].
fn cairn_unprivileged(s: &Scratch, args: &[&str]) -> Output {
    let prefix = unprivileged_prefix(s.dir.path());
    let mut cmd = match prefix.split_first() {
        Some((p, rest)) => {
            let mut c = Command::new(p);
            c.args(rest).arg(cairn_bin());
            c
        }
        None => Command::new(cairn_bin()),
    };
    cmd.arg("--store")
        .arg(s.store())
        .args(args)
        .env_remove("CAIRN_STORE")
        .env_remove("HITKEEP_DATA_PATH")
        .output()
        .expect("run cairn (setpriv is needed when the tests run as root)")
}

/// Asserts `path` really cannot be read under [`unprivileged_prefix`]
/// (otherwise the test would prove nothing).
fn assert_unreadable(s: &Scratch, path: &Path, tool: &str) {
    let prefix = unprivileged_prefix(s.dir.path());
    let mut argv: Vec<String> = prefix;
    argv.push(tool.into());
    argv.push(path.to_str().unwrap().into());
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?} ({e}); setpriv is needed as root"));
    assert!(
        !out.status.success(),
        "{} is still readable by {argv:?}: the test could not make it unreadable",
        path.display()
    );
}

fn random_bytes(n: usize, seed: &str) -> Vec<u8> {
    let mut v = vec![0u8; n];
    blake3::Hasher::new()
        .update(seed.as_bytes())
        .finalize_xof()
        .fill(&mut v);
    v
}

/// A store with one snapshot of a small tree; returns (scratch, data dir, id).
fn store_with_snapshot() -> (Scratch, PathBuf, String) {
    let s = Scratch::new();
    let data = s.path("data");
    fs::create_dir_all(data.join("sub")).unwrap();
    fs::write(data.join("sub/small.txt"), b"small and fine").unwrap();
    fs::write(data.join("big.bin"), random_bytes(600_000, "big")).unwrap();
    s.ok(&["init"]);
    let snap = s.snapshot(&data);
    let id = snap["id"].as_str().unwrap().to_string();
    (s, data, id)
}

#[test]
fn missing_data_path_is_named_and_store_untouched() {
    let (s, _, _) = store_with_snapshot();
    let before = store_digest(&s.store());
    let missing = s.path("no-such-data");
    let out = s.cairn(&["snapshot", "--data-path", missing.to_str().unwrap()]);
    let line = only_error(&out, "missing data path");
    assert!(line.contains(missing.to_str().unwrap()), "{line}");
    assert!(line.contains("does not exist"), "{line}");
    assert_eq!(store_digest(&s.store()), before);
    assert!(!missing.exists());

    // Each given path is named as what it was given as.
    let data = s.path("data2");
    fs::create_dir_all(data.join("sub")).unwrap();
    fs::write(data.join("file"), b"x").unwrap();
    let no_db = s.path("no-such.db");
    let p = |p: &std::path::Path| p.to_str().unwrap().to_string();
    for (args, want) in [
        (
            vec!["--data-path".into(), p(&data), "--db".into(), p(&no_db)],
            format!("control-plane database {} does not exist", p(&no_db)),
        ),
        (
            vec!["--data-path".into(), p(&data.join("file"))],
            format!("data path {} is not a directory", p(&data.join("file"))),
        ),
        (
            vec![
                "--data-path".into(),
                p(&data),
                "--db".into(),
                p(&data.join("sub")),
            ],
            format!(
                "control-plane database {} is not a file",
                p(&data.join("sub"))
            ),
        ),
    ] {
        let mut full = vec!["snapshot".to_string()];
        full.extend(args);
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        let line = only_error(&s.cairn(&full), &want);
        assert!(line.contains(&want), "{line}");
        assert_eq!(store_digest(&s.store()), before);
    }
}

/// A file cairn cannot open fails the snapshot, names the file, and the
/// run is undone completely: a pack sealed earlier in the same run (the
/// three 12 MiB files fill more than one 32 MiB pack before the unreadable
/// file is reached) is removed again. Once the file is readable, the next
/// snapshot stores everything and restores it, so the undone run left no
/// index entries for chunks it deleted.
#[test]
fn unreadable_file_fails_snapshot_and_undoes_the_run() {
    let (s, _, _) = store_with_snapshot();
    let data = s.path("data2");
    fs::create_dir_all(&data).unwrap();
    for name in ["a.bin", "b.bin", "c.bin"] {
        fs::write(data.join(name), random_bytes(12 << 20, name)).unwrap();
    }
    let locked = data.join("zz-locked.bin");
    fs::write(&locked, random_bytes(5 << 20, "zz")).unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    assert_unreadable(&s, &locked, "cat");
    let before = store_digest(&s.store());
    let out = cairn_unprivileged(&s, &["snapshot", "--data-path", data.to_str().unwrap()]);
    let line = only_error(&out, "unreadable file");
    assert!(line.contains(locked.to_str().unwrap()), "{line}");
    assert!(line.contains("Permission denied"), "{line}");
    assert_eq!(
        store_digest(&s.store()),
        before,
        "the failed snapshot left something in the store"
    );
    let list: serde_json::Value = serde_json::from_str(&s.ok(&["--json", "list"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");

    fs::set_permissions(&locked, fs::Permissions::from_mode(0o600)).unwrap();
    s.snapshot(&data);
    let target = s.path("restored");
    s.ok(&["restore", "--target", target.to_str().unwrap()]);
    assert_same_tree(&data, &target);
}

/// A directory cairn cannot list fails the snapshot naming the directory.
#[test]
fn unlistable_directory_fails_snapshot_naming_it() {
    let (s, data, _) = store_with_snapshot();
    let locked = data.join("sub/locked");
    fs::create_dir_all(&locked).unwrap();
    fs::write(locked.join("inner"), b"x").unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    assert_unreadable(&s, &locked, "ls");
    let before = store_digest(&s.store());
    let out = cairn_unprivileged(&s, &["snapshot", "--data-path", data.to_str().unwrap()]);
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
    let line = only_error(&out, "unlistable directory");
    assert!(line.contains(locked.to_str().unwrap()), "{line}");
    assert_eq!(store_digest(&s.store()), before);
}

/// The OS error text appears once in an I/O error line, not twice.
#[test]
fn io_error_text_is_not_repeated() {
    let (s, data, _) = store_with_snapshot();
    let locked = data.join("sub/small.txt");
    // Changed, so the walk does not take it from the parent; then locked.
    fs::write(&locked, b"changed!").unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    assert_unreadable(&s, &locked, "cat");
    let out = cairn_unprivileged(&s, &["snapshot", "--data-path", data.to_str().unwrap()]);
    let line = only_error(&out, "unreadable file");
    assert_eq!(
        line.matches("Permission denied").count(),
        1,
        "OS error repeated: {line}"
    );
}

/// FIFOs, sockets and devices are skipped with a warning naming them; the
/// snapshot succeeds and restore leaves them out. (Used in place of an
/// "unreadable file" where permission bits cannot bind; both are tested.)
#[test]
fn special_files_are_skipped_with_a_warning() {
    let (s, data, _) = store_with_snapshot();
    let fifo = data.join("sub/a-fifo");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success(), "mkfifo");
    let sock_path = data.join("sock");
    let _sock = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let out = s.cairn(&["snapshot", "--data-path", data.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for p in [&fifo, &sock_path] {
        let warned = err
            .lines()
            .any(|l| l.starts_with("cairn: warning:") && l.contains(p.to_str().unwrap()));
        assert!(warned, "no warning naming {}:\n{err}", p.display());
    }
    let target = s.path("t");
    s.ok(&["restore", "--target", target.to_str().unwrap()]);
    assert!(fs::symlink_metadata(target.join("sub/a-fifo")).is_err());
    assert!(fs::symlink_metadata(target.join("sock")).is_err());
    assert_eq!(
        fs::read(target.join("sub/small.txt")).unwrap(),
        b"small and fine"
    );
}

#[test]
fn store_not_initialised_is_refused_and_not_created() {
    let s = Scratch::new();
    let data = s.path("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("f"), b"x").unwrap();
    let empty = s.path("empty");
    fs::create_dir_all(&empty).unwrap();
    let absent = s.path("absent");
    for store in [&empty, &absent] {
        for args in [
            vec!["list"],
            vec!["stats"],
            vec!["ls", "latest"],
            vec!["snapshot", "--data-path", data.to_str().unwrap()],
            vec!["restore", "--target", s.path("t").to_str().unwrap()],
            vec!["forget", "--keep-last", "1"],
            vec!["policy"],
            vec!["prune"],
            vec!["purge-tenant", "0b6e0000-0000-4000-8000-000000000000"],
        ] {
            let mut full: Vec<&std::ffi::OsStr> = vec!["--store".as_ref(), store.as_os_str()];
            full.extend(args.iter().map(std::ffi::OsStr::new));
            let out = cairn_raw(&full);
            let line = only_error(&out, &format!("{args:?} on {}", store.display()));
            assert!(line.contains(store.to_str().unwrap()), "{line}");
            assert!(line.contains("cairn init"), "{line}");
        }
    }
    assert_eq!(
        fs::read_dir(&empty).unwrap().count(),
        0,
        "empty dir written"
    );
    assert!(!absent.exists(), "absent store created");
    assert!(!s.path("t").exists(), "restore target created");
}

#[test]
fn no_store_given_is_refused() {
    let s = Scratch::new();
    let data = s.path("data");
    fs::create_dir_all(&data).unwrap();
    let t = s.path("t");
    for args in [
        vec!["init"],
        vec!["list"],
        vec!["snapshot", "--data-path", data.to_str().unwrap()],
        vec!["restore", "--target", t.to_str().unwrap()],
        vec!["index", "rebuild"],
    ] {
        let argv: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        let out = cairn_raw(&argv);
        let line = only_error(&out, &format!("{args:?} without a store"));
        assert!(line.contains("--store"), "{line}");
        assert!(line.contains("CAIRN_STORE"), "{line}");
    }
    // Nothing was created anywhere we can see.
    let mut left: Vec<_> = fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, vec![std::ffi::OsString::from("data")]);
}

#[test]
fn unknown_snapshot_id_is_named() {
    let (s, _, id) = store_with_snapshot();
    let before = store_digest(&s.store());
    let unknown = "2020-01-01T000000Z";
    assert_ne!(id, unknown);
    let t = s.path("t");
    let out = s.cairn(&[
        "restore",
        "--snapshot",
        unknown,
        "--target",
        t.to_str().unwrap(),
    ]);
    let line = only_error(&out, "restore unknown id");
    assert!(line.contains(unknown), "{line}");
    assert!(!t.exists(), "target created for an unknown snapshot");
    let line = only_error(&s.cairn(&["ls", unknown]), "ls unknown id");
    assert!(line.contains(unknown), "{line}");
    assert_eq!(store_digest(&s.store()), before);

    // `latest` on a store without snapshots says so.
    let s2 = Scratch::new();
    s2.ok(&["init"]);
    let out = s2.cairn(&["restore", "--target", t.to_str().unwrap()]);
    let line = only_error(&out, "latest on empty store");
    assert!(line.contains("latest"), "{line}");
    assert!(line.contains("no snapshots"), "{line}");
    assert!(!t.exists());
}

#[test]
fn malformed_snapshot_id_is_named_with_the_expected_form() {
    let (s, _, _) = store_with_snapshot();
    let before = store_digest(&s.store());
    let t = s.path("t");
    for bad in [
        "yesterday",
        "2026-03-08",
        "2026-13-08T120000Z",
        "2026-03-08T12:00:00Z",
        "",
    ] {
        let out = s.cairn(&[
            "restore",
            "--snapshot",
            bad,
            "--target",
            t.to_str().unwrap(),
        ]);
        let line = only_error(&out, &format!("restore {bad:?}"));
        assert!(line.contains(&format!("{bad:?}")), "{line}");
        assert!(line.contains("2026-03-08T120000Z"), "{line}");
        let line = only_error(&s.cairn(&["ls", bad]), &format!("ls {bad:?}"));
        assert!(line.contains(&format!("{bad:?}")), "{line}");
        assert!(!t.exists());
    }
    assert_eq!(store_digest(&s.store()), before);
}

#[test]
fn init_refuses_a_non_empty_dir_and_an_existing_store() {
    let s = Scratch::new();
    let dir = s.path("busy");
    fs::create_dir_all(dir.join("d")).unwrap();
    fs::write(dir.join("keep.txt"), b"mine").unwrap();
    let before = store_digest(&dir);
    let out = cairn_raw(&["--store".as_ref(), dir.as_os_str(), "init".as_ref()]);
    let line = only_error(&out, "init on non-empty dir");
    assert!(line.contains(dir.to_str().unwrap()), "{line}");
    assert!(line.contains("not empty"), "{line}");
    assert_eq!(store_digest(&dir), before);
    assert!(!dir.join("index").exists());

    let (s, _, _) = store_with_snapshot();
    let before = store_digest(&s.store());
    let config = fs::read(s.store().join("config")).unwrap();
    let line = only_error(&s.cairn(&["init"]), "init on a store");
    assert!(line.contains(s.store().to_str().unwrap()), "{line}");
    assert_eq!(store_digest(&s.store()), before);
    assert_eq!(fs::read(s.store().join("config")).unwrap(), config);

    // A file where the store should be.
    let file = s.path("plain-file");
    fs::write(&file, b"x").unwrap();
    let out = cairn_raw(&["--store".as_ref(), file.as_os_str(), "init".as_ref()]);
    let line = only_error(&out, "init on a file");
    assert!(line.contains(file.to_str().unwrap()), "{line}");
    assert_eq!(fs::read(&file).unwrap(), b"x");
}

/// Packs holding only data chunks, with their trailers.
fn data_packs(store: &Path) -> Vec<(PathBuf, Vec<u8>, pack::PackTrailer)> {
    let mut out = Vec::new();
    for e in fs::read_dir(store.join("packs")).unwrap() {
        let p = e.unwrap().path();
        let bytes = fs::read(&p).unwrap();
        let t = pack::parse_pack(&bytes).unwrap();
        if t.entries.iter().all(|e| e.kind == BlobKind::Data) {
            out.push((p, bytes, t));
        }
    }
    out
}

/// A flipped byte inside a stored chunk: restore fails that file by name
/// (and the pack by id), leaves no partial or temp file, restores the rest,
/// and does not touch the store.
#[test]
fn corrupt_pack_fails_restore_naming_file_and_pack() {
    let (s, _, _) = store_with_snapshot();
    let packs = data_packs(&s.store());
    assert_eq!(packs.len(), 1, "one data pack expected");
    let (path, mut bytes, trailer) = packs.into_iter().next().unwrap();
    // The 600 000 random bytes of big.bin: FastCDC chunks, stored raw.
    let e = trailer
        .entries
        .iter()
        .find(|e| e.len > 16 * 1024)
        .expect("a chunk of big.bin");
    let frame = e.frame_offset as usize;
    assert_eq!(
        bytes[frame],
        pack::Codec::Raw as u8,
        "random data is stored raw"
    );
    let at = frame + pack::FRAME_HEADER_LEN + e.offset as usize + e.len as usize / 2;
    bytes[at] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let pack_hex = path.file_stem().unwrap().to_str().unwrap().to_string();

    let before = store_digest(&s.store());
    let t = s.path("t");
    let out = s.cairn(&["restore", "--target", t.to_str().unwrap()]);
    let line = only_error(&out, "restore from corrupt pack");
    assert!(line.contains("big.bin"), "{line}");
    assert!(line.contains(&pack_hex), "pack not named: {line}");
    assert!(line.contains("damaged"), "{line}");
    let mut names: Vec<_> = fs::read_dir(&t)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["sub"], "partial or temp files left: {names:?}");
    assert_eq!(
        fs::read(t.join("sub/small.txt")).unwrap(),
        b"small and fine"
    );
    assert_eq!(fs::read_dir(t.join("sub")).unwrap().count(), 1);
    assert_eq!(store_digest(&s.store()), before);
}

/// A data pack cut short: the index notices (its length changed), leaves
/// the pack out with a warning naming it, and restore fails the file that
/// needed it by name, without touching the store.
#[test]
fn truncated_pack_is_named_and_restore_fails_the_file() {
    let s = Scratch::new();
    let data = s.path("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("big.bin"), random_bytes(600_000, "big")).unwrap();
    s.ok(&["init"]);
    s.snapshot(&data);
    let packs = data_packs(&s.store());
    assert_eq!(packs.len(), 1);
    let (path, bytes, _) = &packs[0];
    fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
    let pack_hex = path.file_stem().unwrap().to_str().unwrap().to_string();

    let before = store_digest(&s.store());
    let t = s.path("t");
    let out = s.cairn(&["restore", "--target", t.to_str().unwrap()]);
    let line = one_error(&out, "restore from truncated pack");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(line.contains("big.bin"), "{line}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("cairn: warning:") && l.contains(&pack_hex)),
        "truncated pack not named:\n{err}"
    );
    assert!(
        fs::read_dir(&t).unwrap().next().is_none(),
        "partial file left"
    );
    assert_eq!(store_digest(&s.store()), before);
    // The truncated pack is still there for inspection, untouched.
    assert_eq!(fs::read(path).unwrap().len(), bytes.len() / 2);
}

/// A store written by a newer cairn (config format version + 1) is
/// refused by every command, with the version named, and not written to.
#[test]
fn newer_store_format_is_refused_and_untouched() {
    let (s, data, _) = store_with_snapshot();
    let cfg_path = s.store().join("config");
    let cfg = StoreConfig::decode(&fs::read(&cfg_path).unwrap()).unwrap();
    assert_eq!(cfg.format_version, FORMAT_VERSION);
    let newer = StoreConfig {
        format_version: FORMAT_VERSION + 1,
        ..cfg
    };
    fs::write(&cfg_path, newer.encode().unwrap()).unwrap();
    // Also drop the index, so an open that went ahead would rebuild it.
    fs::remove_dir_all(s.store().join("index")).unwrap();
    let before = store_digest(&s.store());
    let t = s.path("t");
    for args in [
        vec!["list"],
        vec!["stats"],
        vec!["snapshot", "--data-path", data.to_str().unwrap()],
        vec!["restore", "--target", t.to_str().unwrap()],
        vec!["index", "rebuild"],
    ] {
        let line = only_error(&s.cairn(&args), &format!("{args:?} on newer store"));
        assert!(
            line.contains(&format!("format version {}", FORMAT_VERSION + 1)),
            "{line}"
        );
        assert!(line.contains("upgrade cairn"), "{line}");
        assert!(line.contains("config"), "{line}");
    }
    assert_eq!(store_digest(&s.store()), before);
    assert!(!s.store().join("index").exists(), "index written");
    assert!(!t.exists());
}

/// The decode error appears once in a format error line, not twice.
#[test]
fn format_error_text_is_not_repeated() {
    let (s, _, _) = store_with_snapshot();
    let cfg_path = s.store().join("config");
    let cfg = StoreConfig::decode(&fs::read(&cfg_path).unwrap()).unwrap();
    let newer = StoreConfig {
        format_version: FORMAT_VERSION + 1,
        ..cfg
    };
    fs::write(&cfg_path, newer.encode().unwrap()).unwrap();
    let line = only_error(&s.cairn(&["list"]), "newer store");
    assert_eq!(
        line.matches("upgrade cairn").count(),
        1,
        "decode error repeated: {line}"
    );
}

/// Lifecycle commands given bad input: one error line naming the problem,
/// and the store exactly as it was.
#[test]
fn lifecycle_bad_input_is_named_and_changes_nothing() {
    let (s, data, _) = store_with_snapshot();
    let before = store_digest(&s.store());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["forget"], "no retention rule"),
        (vec!["forget", "--keep-daily", "0"], "--keep-daily"),
        (vec!["forget", "--keep-within", "3x"], "bad duration"),
        (vec!["prune", "--max-unused", "150"], "--max-unused"),
        (vec!["prune", "--max-repack-bytes", "12Q"], "byte count"),
        (vec!["purge-tenant", "../etc"], "not a tenant id"),
        (
            vec![
                "snapshot",
                "--forget",
                "--data-path",
                data.to_str().unwrap(),
            ],
            "no retention policy stored",
        ),
    ];
    for (args, expect) in cases {
        let out = s.cairn(&args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
        assert_eq!(
            store_digest(&s.store()),
            before,
            "{args:?} changed the store"
        );
    }
    // A damaged policy file is named.
    fs::write(s.store().join("policy"), b"keep everything please\n").unwrap();
    let line = only_error(&s.cairn(&["forget"]), "damaged policy");
    assert!(line.contains("policy"), "{line}");
    assert!(line.contains("not a policy file"), "{line}");
}

#[test]
fn compression_level_is_checked_and_used() {
    let s = Scratch::new();
    // Out of range: refused by the parser, no store created.
    for level in ["0", "20", "-8", "x"] {
        let store = s.path(&format!("bad-{level}"));
        let out = cairn_raw(&[
            "--store".as_ref(),
            store.as_os_str(),
            "init".as_ref(),
            "--compression-level".as_ref(),
            level.as_ref(),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "level {level}: {err}");
        assert!(err.contains("--compression-level"), "level {level}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!store.exists(), "level {level} created a store");
    }
    // A chunk size the config refuses: nothing is created, so the same
    // init with a good value then works.
    let store = s.path("bad-chunk");
    for (kib, ok) in [("3", false), ("512", false), ("4", true)] {
        let out = cairn_raw(&[
            "--store".as_ref(),
            store.as_os_str(),
            "init".as_ref(),
            "--duckdb-chunk-kib".as_ref(),
            kib.as_ref(),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), ok, "{kib} KiB: {err}");
        if !ok {
            assert!(err.contains("DuckDB chunk size"), "{kib} KiB: {err}");
            assert_eq!(err.trim().lines().count(), 1, "{err}");
            assert!(!store.exists(), "{kib} KiB left {:?}", files_under(&store));
        }
    }
    // A chosen level is recorded and changes what is stored: compressible
    // text takes fewer pack bytes at level 1 than at -1 (literals left
    // uncompressed), and fewer at 19 than at 1.
    let data = s.path("data");
    fs::create_dir_all(&data).unwrap();
    let text: String = (0..60_000)
        .map(|i| format!("{i} GET /page/{} 200 {}\n", i % 97, (i * 7919) % 1000))
        .collect();
    fs::write(data.join("access.log"), text).unwrap();
    let mut packs = Vec::new();
    for level in ["-1", "1", "19"] {
        let store = s.path(&format!("store-{level}"));
        let run = |args: &[&str]| {
            let mut full: Vec<&std::ffi::OsStr> = vec!["--store".as_ref(), store.as_os_str()];
            full.extend(args.iter().map(std::ffi::OsStr::new));
            let out = cairn_raw(&full);
            assert!(out.status.success(), "{args:?}: {out:?}");
        };
        run(&["init", "--compression-level", level]);
        let cfg = StoreConfig::decode(&fs::read(store.join("config")).unwrap()).unwrap();
        assert_eq!(cfg.compression.zstd_level.to_string(), level);
        run(&["snapshot", "--data-path", data.to_str().unwrap(), "--quiet"]);
        packs.push(pack_bytes(&store));
    }
    assert!(
        packs[2] < packs[1] && packs[1] < packs[0],
        "pack bytes at levels -1, 1, 19: {packs:?}"
    );
}

/// The store never holds restored or snapshotted files of its own: a
/// restore target inside it, a snapshot of it, and a replica inside it
/// (or holding it) are refused, naming the path, and change nothing.
#[test]
fn the_store_is_never_a_target_source_or_replica_of_itself() {
    let (s, _, _) = store_with_snapshot();
    let before = store_digest(&s.store());
    let st = s.store();
    let inside = st.join("restored");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "restore".into(),
                "--target".into(),
                inside.display().to_string(),
            ],
            "inside the store",
        ),
        (
            vec![
                "restore".into(),
                "--overwrite".into(),
                "--target".into(),
                st.display().to_string(),
            ],
            "inside the store",
        ),
        (
            vec![
                "snapshot".into(),
                "--data-path".into(),
                st.display().to_string(),
            ],
            "inside the store",
        ),
        (
            vec![
                "restore".into(),
                "--data-path".into(),
                inside.display().to_string(),
                "--yes".into(),
            ],
            "inside the store",
        ),
        (
            vec![
                "replicate".into(),
                "--to".into(),
                format!("{}/", st.display()),
            ],
            "the store itself",
        ),
        (
            vec![
                "replicate".into(),
                "--to".into(),
                st.join("sub").display().to_string(),
            ],
            "the store itself",
        ),
        (
            vec![
                "replicate".into(),
                "--to".into(),
                s.path("").display().to_string(),
            ],
            "the store itself",
        ),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let line = only_error(&s.cairn(&args), want);
        assert!(line.contains(want), "{args:?}: {line}");
        assert_eq!(store_digest(&s.store()), before, "{args:?}");
    }
    assert!(!inside.exists());
    assert!(!st.join("sub").exists());
}

/// A manifest that cannot be read is not silently missing from `list`:
/// a warning names it (and `latest`, which it may be, fails naming it).
#[test]
fn list_names_a_snapshot_whose_manifest_is_damaged() {
    let (s, _, _) = store_with_snapshot();
    let bad = "2099-01-01T000000Z";
    fs::write(s.store().join("snapshots").join(bad), b"not a manifest").unwrap();
    let out = s.cairn(&["list"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(bad) && err.contains("cannot be read"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(bad));
    let line = only_error(&s.cairn(&["ls", "latest"]), "ls latest");
    assert!(line.contains(bad), "{line}");
}

/// replicate refuses, before touching the destination: a file, a
/// directory that holds something else, an unknown snapshot, no jobs.
#[test]
fn replicate_refuses_a_bad_destination_and_leaves_it_alone() {
    let (s, _, _) = store_with_snapshot();
    let file = s.path("a-file");
    fs::write(&file, b"x").unwrap();
    let other = s.path("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("notes.txt"), b"mine").unwrap();
    let fresh = s.path("fresh");
    let f = |p: &std::path::Path| p.to_str().unwrap().to_string();
    for (args, want) in [
        (vec!["--to".to_string(), f(&file)], "not a directory"),
        (
            vec!["--to".to_string(), f(&other)],
            "neither empty nor a cairn store",
        ),
        (
            vec![
                "--to".to_string(),
                f(&fresh),
                "--snapshot".into(),
                "2001-01-01T000000Z".into(),
            ],
            "2001-01-01T000000Z",
        ),
        (
            vec!["--to".to_string(), f(&fresh), "--jobs".into(), "0".into()],
            "--jobs",
        ),
    ] {
        let mut full = vec!["replicate".to_string()];
        full.extend(args);
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        let out = s.cairn(&full);
        assert!(!out.status.success(), "{full:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{full:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    assert_eq!(fs::read(&file).unwrap(), b"x");
    assert_eq!(
        files_under(&other),
        vec![std::path::PathBuf::from("notes.txt")]
    );
    assert!(!fresh.exists());
    // An empty directory, and one a stopped replication left its lock in,
    // are fine.
    fs::create_dir(&fresh).unwrap();
    s.ok(&["replicate", "--to", &f(&fresh)]);
    let resumed = s.path("resumed");
    fs::create_dir(&resumed).unwrap();
    fs::write(resumed.join("lock"), b"").unwrap();
    fs::create_dir(resumed.join("tmp")).unwrap();
    s.ok(&["replicate", "--to", &f(&resumed)]);
}

/// The inside-the-store check follows a symlink in the part of a path that
/// exists and takes `..` in the rest as it will be: a target reached
/// through a link into the store is refused before anything is created,
/// and `STORE/../elsewhere` is not inside the store.
#[test]
fn the_inside_the_store_check_resolves_links_and_dot_dot() {
    let (s, _, _) = store_with_snapshot();
    let link = s.path("link");
    std::os::unix::fs::symlink(s.store(), &link).unwrap();
    let before = store_digest(&s.store());
    let via_link = link.join("packs/x");
    let line = only_error(
        &s.cairn(&["restore", "--target", via_link.to_str().unwrap()]),
        "target through a link",
    );
    assert!(line.contains("inside the store"), "{line}");
    assert_eq!(store_digest(&s.store()), before);
    assert!(!s.store().join("packs/x").exists());
    let beside = s.store().join("../beside");
    s.ok(&["restore", "--target", beside.to_str().unwrap(), "--no-sync"]);
    assert!(s.path("beside").is_dir());
}

/// Snapshots a tree `other/` holding `<dir>/packs/<the name of one of the
/// store's packs>` with other bytes: restored where `<dir>` is the store,
/// it would replace that pack.
fn snapshot_a_tree_holding_a_pack_of(s: &Scratch, dir: &str) {
    let other = s.path("other");
    fs::create_dir_all(other.join(dir).join("packs")).unwrap();
    let pack = fs::read_dir(s.store().join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_file())
        .expect("a pack");
    let name = pack.file_name().unwrap();
    fs::write(other.join(dir).join("packs").join(name), b"not that pack").unwrap();
    s.snapshot(&other);
}

/// No restore writes into the store: a drill target inside it is refused
/// before it is made, and a restore into a directory holding the store
/// refuses a snapshot whose paths would land in it (a tree that held a
/// store at the same place), leaving the store as it was.
#[test]
fn no_restore_writes_into_the_store() {
    let (s, data, first) = store_with_snapshot();
    let before = store_digest(&s.store());
    let inside = s.store().join("drill");
    let line = only_error(
        &s.cairn(&["drill", "--target", inside.to_str().unwrap()]),
        "drill target inside the store",
    );
    assert!(
        line.contains("drill target") && line.contains("inside the store"),
        "{line}"
    );
    assert!(!inside.exists());
    assert_eq!(store_digest(&s.store()), before);

    // A tree with a `store/packs/...` of its own, restored over the
    // directory that holds this store.
    snapshot_a_tree_holding_a_pack_of(&s, "store");
    let before = store_digest(&s.store());
    let root = s.store().parent().unwrap().to_path_buf();
    let line = only_error(
        &s.cairn(&["restore", "--target", root.to_str().unwrap(), "--overwrite"]),
        "restore over the store's directory",
    );
    assert!(line.contains("inside the store"), "{line}");
    assert_eq!(store_digest(&s.store()), before);
    // A snapshot with nothing at the store's place restores there fine.
    s.ok(&[
        "restore",
        "--snapshot",
        &first,
        "--target",
        root.to_str().unwrap(),
        "--overwrite",
        "--no-sync",
    ]);
    assert_eq!(
        fs::read(root.join("sub/small.txt")).unwrap(),
        fs::read(data.join("sub/small.txt")).unwrap()
    );
}

/// An archive directory that is a file is refused; one configured outside
/// the data path and missing is a warning naming it; an empty
/// `HITKEEP_ARCHIVE_PATH=` means the default, as HitKeep reads it.
#[test]
fn a_bad_archive_path_is_named() {
    let (s, data, _) = store_with_snapshot();
    let before = store_digest(&s.store());
    let file = s.path("archive-file");
    fs::write(&file, b"x").unwrap();
    let d = data.to_str().unwrap();
    let line = only_error(
        &s.cairn(&[
            "snapshot",
            "--data-path",
            d,
            "--archive-path",
            file.to_str().unwrap(),
        ]),
        "archive path that is a file",
    );
    assert!(
        line.contains(file.to_str().unwrap()) && line.contains("not a directory"),
        "{line}"
    );
    assert_eq!(store_digest(&s.store()), before);

    let nowhere = s.path("archive-nowhere");
    let out = s.cairn(&[
        "snapshot",
        "--data-path",
        d,
        "--archive-path",
        nowhere.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().any(|l| l.contains("WARNING")
            && l.contains(&format!(
                "archive directory {} is missing",
                nowhere.display()
            ))),
        "{err}"
    );
    let out = cairn_env(
        &s,
        &["--json", "snapshot", "--data-path", d],
        &[("HITKEEP_ARCHIVE_PATH", ""), ("HITKEEP_DB_PATH", "")],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snap = parse_json(&String::from_utf8_lossy(&out.stdout));
    let default = data.join("archive");
    assert_eq!(
        snap["boundary"]["archive"],
        serde_json::json!({"missing": default.to_str().unwrap()})
    );
}

/// A usage error clap finds is one `cairn: error:` line with exit code 2,
/// not clap's usage block; help still prints in full.
#[test]
fn usage_errors_are_one_line() {
    let s = Scratch::new();
    for (args, want) in [
        (vec!["snapshot"], "--data-path"),
        (
            vec!["snapshot", "--data-path", "d", "--archive-path", ""],
            "--archive-path",
        ),
        (vec!["frob"], "frob"),
        (vec!["list", "--bogus"], "--bogus"),
        (
            vec!["--lock-wait", "1e20", "list"],
            "not a number of seconds",
        ),
        (vec!["--lock-wait=-1", "list"], "not a number of seconds"),
        (
            vec!["drill", "--default-tenant", "not-a-uuid"],
            "not a tenant UUID",
        ),
        (
            vec!["drill", "--validate-timeout", "0"],
            "more than 0 seconds",
        ),
        (vec!["drill", "--hitkeep-version", ""], "--hitkeep-version"),
    ] {
        let out = s.cairn(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("cairn: error: ") && err.contains(want),
            "{args:?}: {err}"
        );
    }
    let out = s.cairn(&["list", "--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: cairn list"));
}

/// `repair --data-path` checks the data path before it changes anything,
/// dry run or not.
#[test]
fn repair_refuses_a_missing_data_path_first() {
    let (s, _, _) = store_with_snapshot();
    let before = store_digest(&s.store());
    let nowhere = s.path("nowhere");
    for extra in [&["--dry-run"][..], &[][..]] {
        let mut args = vec!["repair", "--data-path", nowhere.to_str().unwrap()];
        args.extend(extra);
        let line = only_error(&s.cairn(&args), "repair from a missing data path");
        assert!(
            line.contains("data path") && line.contains("does not exist"),
            "{line}"
        );
        assert_eq!(store_digest(&s.store()), before);
    }
}

/// `ls` writes one line per entry whatever the name holds (newlines,
/// tabs, backslashes, bytes that are not UTF-8 are escaped), and its
/// JSON gives a non-UTF-8 name byte for byte.
#[test]
fn ls_escapes_names_and_json_keeps_their_bytes() {
    use std::os::unix::ffi::OsStrExt;
    let s = Scratch::new();
    let data = s.path("data");
    fs::create_dir_all(&data).unwrap();
    let names: [&[u8]; 4] = [b"a\nb", b"back\\slash", b"bad\xff\xfename", b"plain"];
    for n in names {
        fs::write(data.join(std::ffi::OsStr::from_bytes(n)), b"x").unwrap();
    }
    s.ok(&["init"]);
    s.snapshot(&data);
    let out = s.ok(&["ls", "latest"]);
    let names_listed: Vec<&str> = out.lines().map(|l| l.rsplit(' ').next().unwrap()).collect();
    assert_eq!(
        names_listed,
        ["a\\nb", "back\\\\slash", "bad\\xff\\xfename", "plain"],
        "{out}"
    );
    let v = parse_json(&s.ok(&["--json", "ls", "latest"]));
    let bad = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path_hex"].is_string())
        .expect("the non-UTF-8 name has path_hex");
    assert_eq!(bad["path_hex"], "626164fffe6e616d65");
    let with_newline = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["path"] == "a\nb")
        .count();
    assert_eq!(with_newline, 1, "{v}");
}

/// Sets every mode under `root` (`root` too): directories `dir`, files `file`.
fn chmod_tree(root: &Path, dir: u32, file: u32) {
    for e in fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        let m = fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            chmod_tree(&p, dir, file);
        } else if m.is_file() {
            fs::set_permissions(&p, fs::Permissions::from_mode(file)).unwrap();
        }
    }
    fs::set_permissions(root, fs::Permissions::from_mode(dir)).unwrap();
}

/// A store this process may only read (another user's, a read-only
/// mount) is listed, checked and restored from like a remote one, its
/// index in the cache directory; a command that would change it says it
/// is read-only, in one line; nothing in it changes.
#[test]
fn a_store_this_process_may_only_read_is_read() {
    let s = Scratch::new();
    let data = s.path("data");
    tiny_data_path(&data);
    s.ok(&["init"]);
    let first = s.snapshot(&data)["id"].as_str().unwrap().to_string();
    let first_tree = s.path("first-tree");
    copy_tree(&data, &first_tree);
    age(&data, 1, 3);
    s.snapshot(&data);
    s.ok(&["policy", "--keep-last", "5"]);
    s.ok(&["drill", "--quiet"]);
    let before = store_digest(&s.store());
    chmod_tree(&s.store(), 0o555, 0o444);
    let cache = s.path("cache");
    let run = |args: &[&str]| {
        let mut all = vec!["--cache-dir", cache.to_str().unwrap()];
        all.extend(args);
        cairn_unprivileged(&s, &all)
    };
    // Refused before anything is done (no index is built for them).
    let d = data.to_str().unwrap();
    for cmd in [
        &["snapshot", "--data-path", d][..],
        &["forget", "--keep-last", "1"][..],
        &["prune"][..],
        &["policy", "--keep-last", "1"][..],
        &["repair"][..],
        &["purge-tenant", "0e8d5f6a-1b2c-4d3e-8f90-a1b2c3d4e5f6"][..],
    ] {
        let line = only_error(&run(cmd), "a change to a read-only store");
        assert!(
            line.contains("read-only to this process") && line.contains(cmd[0]),
            "{cmd:?}: {line}"
        );
    }
    assert!(!cache.exists(), "a refused command built a cache");
    let ok = |args: &[&str]| {
        let out = run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let list = ok(&["list"]);
    assert_eq!(list.lines().count(), 3);
    // The store's own state is read from the store, not from the cache.
    assert!(list.lines().skip(1).all(|l| l.contains("last")), "{list}");
    assert!(ok(&["policy"]).contains("keep-last 5"));
    assert_eq!(ok(&["drills"]).lines().count(), 2);
    assert!(ok(&["drill"]).contains("not recorded"));
    assert!(ok(&["ls", &first]).contains("hitkeep.db"));
    ok(&["check", "--read-data"]);
    let t1 = s.path("t1");
    ok(&[
        "restore",
        "--snapshot",
        &first,
        "--target",
        t1.to_str().unwrap(),
    ]);
    assert_same_tree(&first_tree, &t1);
    let t2 = s.path("t2");
    ok(&["restore", "--target", t2.to_str().unwrap()]);
    assert_same_tree(&data, &t2);
    chmod_tree(&s.store(), 0o755, 0o644);
    assert_eq!(store_digest(&s.store()), before);
}

/// The read-only probe looks at the store's directories and its lock:
/// a lock file alone that is not writable makes the store read-only (and
/// the inside-the-store guard still guards the store, not the cache); a
/// read-only store without a lock file (one copied down from a bucket)
/// is read too.
#[test]
fn a_store_with_only_its_lock_read_only_or_no_lock_is_read_safely() {
    let (s, _, _) = store_with_snapshot();
    let cache = s.path("cache");
    let run = |args: &[&str]| {
        let mut all = vec!["--cache-dir", cache.to_str().unwrap()];
        all.extend(args);
        cairn_unprivileged(&s, &all)
    };
    // A tree holding `store/packs/<a real pack's name>`, restored over the
    // directory that holds the store.
    snapshot_a_tree_holding_a_pack_of(&s, "store");
    let lock = s.store().join("lock");
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o444)).unwrap();
    let before = store_digest(&s.store());
    let root = s.store().parent().unwrap().to_path_buf();
    let line = one_error(
        &run(&["restore", "--target", root.to_str().unwrap(), "--overwrite"]),
        "restore over the store's directory, lock read-only",
    );
    assert!(
        line.contains("inside the store") && line.contains(s.store().to_str().unwrap()),
        "{line}"
    );
    let line = one_error(
        &run(&["snapshot", "--data-path", s.path("other").to_str().unwrap()]),
        "snapshot",
    );
    assert!(line.contains("lock is not writable"), "{line}");
    assert_eq!(store_digest(&s.store()), before);

    // No lock file, nothing writable.
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o644)).unwrap();
    fs::remove_file(&lock).unwrap();
    chmod_tree(&s.store(), 0o555, 0o444);
    let out = run(&["list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    chmod_tree(&s.store(), 0o755, 0o644);
}

/// A bind mount, unmounted when dropped.
struct BindMount(PathBuf);

impl BindMount {
    /// Mounts `from` on `on` (a new directory), or `None` where this
    /// process may not mount.
    fn new(from: &Path, on: &Path) -> Option<Self> {
        fs::create_dir_all(on).unwrap();
        let ok = Command::new("mount")
            .arg("--bind")
            .arg(from)
            .arg(on)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| BindMount(on.to_owned()))
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The store seen through a bind mount is the store: a restore target
/// under the mount is refused before anything is made, and a restore
/// `--overwrite` whose snapshot has a directory where the target holds
/// the mounted store is refused before writing, leaving the store as it
/// was. (Skipped where this process may not mount.)
#[test]
fn the_store_seen_through_a_bind_mount_is_still_the_store() {
    let (s, _, _) = store_with_snapshot();
    let mnt = s.path("mnt");
    let Some(_mount) = BindMount::new(&s.store(), &mnt) else {
        eprintln!("skipped: mount --bind is not permitted here");
        return;
    };
    let before = store_digest(&s.store());
    let inside = mnt.join("restored");
    let line = one_error(
        &s.cairn(&["restore", "--target", inside.to_str().unwrap()]),
        "restore target through a bind mount",
    );
    assert!(line.contains("inside the store"), "{line}");
    assert!(!s.store().join("restored").exists());
    assert_eq!(store_digest(&s.store()), before);

    // A tree with `mnt/packs/<a real pack's name>`, restored over the
    // scratch directory, where `mnt` is the store.
    snapshot_a_tree_holding_a_pack_of(&s, "mnt");
    let before = store_digest(&s.store());
    let line = one_error(
        &s.cairn(&[
            "restore",
            "--target",
            s.path("").to_str().unwrap(),
            "--overwrite",
        ]),
        "restore over a bind mount of the store",
    );
    assert!(line.contains("inside the store"), "{line}");
    assert_eq!(store_digest(&s.store()), before);
}
