//! Importing HitKeep's built-in backups (`import-hitkeep-backups`) and
//! writing them back (`restore --as-hitkeep-backup`), on exports made by
//! real DuckDB `EXPORT DATABASE ... (FORMAT PARQUET)` from a generated
//! data path aged one hour between exports (`tests/hitkeep_backup.py`).
//!
//! The number of hourly exports is `CAIRN_IMPORT_EXPORTS` (default 24, as
//! HitKeep keeps); the series is built once and cached like the other
//! fixtures.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::*;

fn backup_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/hitkeep_backup.py")
}

fn exports_wanted() -> usize {
    std::env::var("CAIRN_IMPORT_EXPORTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(24)
}

/// The cached backup directory: `n` hourly exports of the tiny data path.
fn backup_fixture(n: usize) -> PathBuf {
    let script = fs::read(backup_script()).unwrap();
    let key = format!(
        "backups-tiny-seed7-{n}h-{}",
        &blake3::hash(&script).to_hex()[..8]
    );
    let fx = cached_fixture(&key, |d| {
        let data = d.join("data");
        gen(&[
            "create",
            data.to_str().unwrap(),
            "--scale",
            "tiny",
            "--seed",
            "7",
        ]);
        let out = Command::new("python3")
            .arg(backup_script())
            .args(["series", data.to_str().unwrap()])
            .arg(d.join("backup"))
            .args(["--hours", &n.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "hitkeep_backup.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    fx.join("backup")
}

/// The `{ts}` names of the runs under a backup directory.
fn runs(backup: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(backup.join("shared"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    out.sort();
    out
}

fn file_bytes(dir: &Path) -> u64 {
    tree_digest(dir)
        .keys()
        .map(|p| fs::symlink_metadata(dir.join(p)).unwrap())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn import(s: &Scratch, from: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "--json",
        "import-hitkeep-backups",
        "--from",
        from.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    parse_json(&s.ok(&args))
}

/// Row counts of every table after DuckDB's own `IMPORT DATABASE` of
/// each export directory (what HitKeep's restore-backup runs).
fn import_counts(dirs: &[PathBuf], scratch: &Path) -> Vec<Value> {
    const SNIPPET: &str = r#"
import duckdb, json, os, sys
scratch = sys.argv[1]
out = []
for i, d in enumerate(sys.argv[2:]):
    db = os.path.join(scratch, f"imported-{i}.db")
    con = duckdb.connect(db)
    con.execute(f"IMPORT DATABASE '{d}'")
    tabs = con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()
    out.append({t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for (t,) in tabs})
    con.close()
    os.remove(db)
print(json.dumps(out))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(SNIPPET)
        .arg(scratch)
        .args(dirs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "IMPORT DATABASE failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn export_dirs(backup: &Path, ts: &str) -> Vec<PathBuf> {
    let mut dirs = vec![backup.join("shared").join(ts)];
    let mut tenants: Vec<PathBuf> = fs::read_dir(backup.join("tenants"))
        .unwrap()
        .map(|e| e.unwrap().path().join(ts))
        .filter(|p| p.is_dir())
        .collect();
    tenants.sort();
    dirs.extend(tenants);
    dirs
}

#[test]
fn hourly_exports_dedup_and_are_written_back_byte_identical() {
    let n = exports_wanted();
    let s = Scratch::new();
    let backup = s.path("backup");
    copy_tree(&backup_fixture(n), &backup);
    let ts = runs(&backup);
    assert_eq!(ts.len(), n);
    s.ok(&["init"]);

    let r = import(&s, &backup, &["--min-age", "0"]);
    let imported: Vec<&str> = r["imported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["snapshot"].as_str().unwrap())
        .collect();
    assert_eq!(imported, ts.iter().map(String::as_str).collect::<Vec<_>>());
    // Each snapshot holds its own run and nothing else.
    for (i, t) in ts.iter().enumerate() {
        let files: usize = export_dirs(&backup, t)
            .iter()
            .map(|d| files_under(d).len())
            .sum();
        assert_eq!(r["imported"][i]["files"], files as u64, "run {t}");
    }
    // Each snapshot has the run's own timestamp and is marked an import.
    let listed = parse_json(&s.ok(&["--json", "list"]));
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, imported);

    // What the store holds against what the exports take.
    let export_bytes = file_bytes(&backup);
    let stored = store_bytes(&s.store());
    let ratio = stored as f64 / export_bytes as f64;
    eprintln!(
        "import of {n} hourly exports: exports {export_bytes} bytes, store {stored} bytes, ratio {ratio:.3}"
    );
    // Each export file is a patch against the hour before (0.045 measured;
    // 0.52 when the files were only chunked: see ARCHITECTURE.md).
    assert!(ratio <= 0.10, "store is {ratio:.3} of the exports");

    // Importing again adds nothing.
    let before = store_state(&s.store());
    let again = import(&s, &backup, &["--min-age", "0"]);
    assert_eq!(again["imported"].as_array().unwrap().len(), 0);
    let reasons: BTreeSet<&str> = again["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, BTreeSet::from(["already imported"]));
    assert_eq!(before, store_state(&s.store()));

    // Every run written back: the whole layout is identical (names,
    // contents, modes, mtimes).
    let out = s.path("out");
    for t in &ts {
        restore_run(&s, t, &out);
    }
    assert_same_tree(&backup, &out);
    s.ok(&["check", "--read-data"]);
    // The newest run (23 patches above the first) drills clean.
    let d = parse_json(&s.ok(&["--json", "drill", "--snapshot", ts.last().unwrap()]));
    assert_eq!(d["passed"], true, "{d:#}");

    // DuckDB imports the written-back run on its own (the originals moved
    // away), to the same rows as the original.
    let last = ts.last().unwrap();
    let want = import_counts(&export_dirs(&backup, last), &s.path(""));
    fs::rename(&backup, s.path("originals")).unwrap();
    let got = import_counts(&export_dirs(&out, last), &s.path(""));
    assert_eq!(got, want);
    assert!(got[0]["teams"].as_i64().unwrap() > 0, "{got:?}");
}

#[test]
fn incomplete_and_recent_runs_wait_and_only_imports_restore_as_backups() {
    let s = Scratch::new();
    let fixture = backup_fixture(exports_wanted());
    let ts = runs(&fixture);
    let (first, second) = (&ts[0], &ts[1]);
    // A backup path with two runs: the second one half written (a tenant
    // export without load.sql yet).
    let backup = s.path("backup");
    for t in [first, second] {
        for d in export_dirs(&fixture, t) {
            let rel = d.strip_prefix(&fixture).unwrap();
            fs::create_dir_all(backup.join(rel).parent().unwrap()).unwrap();
            copy_tree(&d, &backup.join(rel));
        }
    }
    let unfinished = export_dirs(&backup, second)[1].join("load.sql");
    fs::remove_file(&unfinished).unwrap();
    s.ok(&["init"]);

    // Files just written are left for a later run by default.
    let fresh = export_dirs(&backup, first)[0].join("teams.parquet");
    let f = fs::OpenOptions::new().append(true).open(&fresh).unwrap();
    f.set_modified(std::time::SystemTime::now()).unwrap();
    drop(f);
    let r = import(&s, &backup, &[]);
    assert_eq!(r["imported"].as_array().unwrap().len(), 0);
    let skipped = r["skipped"].to_string();
    assert!(
        skipped.contains("HitKeep may still be writing it"),
        "{skipped}"
    );
    assert!(
        skipped.contains("incomplete export") && skipped.contains("load.sql"),
        "{skipped}"
    );

    let r = import(&s, &backup, &["--min-age", "0"]);
    assert_eq!(r["imported"][0]["snapshot"], first.as_str());
    assert_eq!(r["imported"].as_array().unwrap().len(), 1);

    // A drill of an imported run checks the exports.
    let out = s.ok(&["--json", "drill", "--snapshot", first]);
    let d = parse_json(&out);
    assert_eq!(d["passed"], true, "{d:#}");
    let status = |name: &str| {
        d["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == name)
            .unwrap()["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(status("parquet-structure"), "passed");
    assert_eq!(status("tenants"), "passed");
    assert_eq!(status("duckdb-structure"), "skipped");

    // Writing back refuses an existing run directory and a snapshot that
    // is not an import.
    let err = s.fails(&[
        "restore",
        "--as-hitkeep-backup",
        "--snapshot",
        first,
        "--target",
        backup.to_str().unwrap(),
    ]);
    assert!(
        err.contains("not empty") && err.contains(first.as_str()),
        "{err}"
    );
    // ... and a target inside the store, before creating it.
    let inside = s.store().join("exports");
    let err = s.fails(&[
        "restore",
        "--as-hitkeep-backup",
        "--snapshot",
        first,
        "--target",
        inside.to_str().unwrap(),
    ]);
    assert!(err.contains("inside the store"), "{err}");
    assert!(!inside.exists());
    let data = s.path("data");
    tiny_data_path(&data);
    let plain = s.snapshot(&data)["id"].as_str().unwrap().to_string();
    let err = s.fails(&[
        "restore",
        "--as-hitkeep-backup",
        "--snapshot",
        &plain,
        "--target",
        s.path("x").to_str().unwrap(),
    ]);
    assert!(err.contains("is not an import of HitKeep backups"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn a_data_path_snapshot_after_a_newer_import_keeps_its_data_path_parent() {
    let s = Scratch::new();
    let data = s.path("data");
    tiny_data_path(&data);
    s.ok(&["init"]);
    let first = s.snapshot(&data);
    // A backup run newer than that snapshot (HitKeep's hourly export,
    // imported after it).
    let fixture = backup_fixture(exports_wanted());
    let run = runs(&fixture)[0].clone();
    let newer = "2099-01-01T000000Z";
    let backup = s.path("backup");
    for d in export_dirs(&fixture, &run) {
        let rel = d.strip_prefix(&fixture).unwrap();
        let dest = backup.join(rel.parent().unwrap()).join(newer);
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        copy_tree(&d, &dest);
    }
    let r = import(&s, &backup, &["--min-age", "0"]);
    assert_eq!(r["imported"][0]["snapshot"], newer);
    // `latest` names the data-path snapshot, not the newer import, and an
    // import is never restored in place into a data path.
    let latest = parse_json(&s.ok(&["--json", "show", "latest"]));
    assert_eq!(latest["id"], first["id"]);
    let live = s.path("live");
    copy_tree(&data, &live);
    let before = tree_digest(&live);
    let err = s.fails(&[
        "restore",
        "--snapshot",
        newer,
        "--data-path",
        live.to_str().unwrap(),
        "--yes",
    ]);
    assert!(
        err.contains("is an import") && err.contains("--as-hitkeep-backup"),
        "{err}"
    );
    assert_eq!(tree_digest(&live), before, "the data path is untouched");
    // A backup run from the very second of the data-path snapshot takes
    // the next free second as its id, and still restores as that run.
    let clash = first["id"].as_str().unwrap().to_string();
    for d in export_dirs(&fixture, &run) {
        let rel = d.strip_prefix(&fixture).unwrap();
        let dest = backup.join(rel.parent().unwrap()).join(&clash);
        copy_tree(&d, &dest);
    }
    let r = import(&s, &backup, &["--min-age", "0"]);
    let clash_id: cairn_format::SnapshotId = clash.parse().unwrap();
    let bumped = cairn_format::SnapshotId(clash_id.0 + 1).to_string();
    assert_eq!(r["imported"][0]["snapshot"], bumped.as_str(), "{r}");
    let out = s.path("written-back");
    s.ok(&[
        "restore",
        "--as-hitkeep-backup",
        "--snapshot",
        &bumped,
        "--target",
        out.to_str().unwrap(),
    ]);
    assert!(
        out.join("shared").join(&clash).is_dir(),
        "written back as its own run"
    );
    // The next data-path snapshot compares with the data-path snapshot,
    // not the import: nothing is read again, no finding.
    let second = s.snapshot(&data);
    assert_eq!(second["parent"], first["id"]);
    assert_eq!(second["files_unchanged"], second["files"]);
    assert_eq!(second["boundary"]["findings"], serde_json::json!([]));
}

#[test]
fn bad_backup_paths_are_refused_with_one_line() {
    let s = Scratch::new();
    s.ok(&["init"]);
    let before = store_state(&s.store());
    let missing = s.path("no-such-dir");
    let empty = s.path("empty");
    fs::create_dir(&empty).unwrap();
    for (from, says) in [
        (missing.to_str().unwrap(), "is not a directory"),
        ("s3://bucket/hitkeep", "is object storage"),
        (empty.to_str().unwrap(), "holds no HitKeep backups"),
    ] {
        let err = s.fails(&["import-hitkeep-backups", "--from", from]);
        assert!(err.contains(says) && err.contains(from), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert_eq!(before, store_state(&s.store()));
}

#[test]
fn purging_a_tenant_removes_it_from_imported_runs_for_good() {
    let s = Scratch::new();
    let fixture = backup_fixture(exports_wanted());
    let ts = runs(&fixture)[..2].to_vec();
    let backup = s.path("backup");
    for t in &ts {
        for d in export_dirs(&fixture, t) {
            let rel = d.strip_prefix(&fixture).unwrap();
            fs::create_dir_all(backup.join(rel).parent().unwrap()).unwrap();
            copy_tree(&d, &backup.join(rel));
        }
    }
    s.ok(&["init"]);
    import(&s, &backup, &["--min-age", "0"]);
    let victim = export_dirs(&backup, &ts[0])[1]
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    s.ok(&["purge-tenant", &victim]);
    // Every imported run lost the tenant's exports, and only those.
    let listed = parse_json(&s.ok(&["--json", "list"]));
    let ids: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    for id in &ids {
        let ls = s.ok(&["ls", id]);
        assert!(!ls.contains(&victim), "{id} still holds {victim}:\n{ls}");
        assert!(ls.contains("load.sql"), "{ls}");
    }
    // Importing again does not bring the tenant back.
    let again = import(&s, &backup, &["--min-age", "0"]);
    assert_eq!(again["imported"].as_array().unwrap().len(), 0, "{again:#}");
    // A purged run still writes back as a backup run and passes a drill.
    let out = s.path("out");
    s.ok(&[
        "restore",
        "--as-hitkeep-backup",
        "--snapshot",
        &ids[0],
        "--target",
        out.to_str().unwrap(),
    ]);
    assert!(out.join("shared").join(&ts[0]).join("load.sql").is_file());
    assert!(!out.join("tenants").join(&victim).exists());
    let d = parse_json(&s.ok(&["--json", "drill", "--snapshot", &ids[1]]));
    assert_eq!(d["passed"], true, "{d:#}");
}

/// Writes imported run `ts` back into `out` in HitKeep's layout.
fn restore_run(s: &Scratch, ts: &str, out: &Path) {
    s.ok(&[
        "-q",
        "restore",
        "--as-hitkeep-backup",
        "--snapshot",
        ts,
        "--target",
        out.to_str().unwrap(),
    ]);
}

/// `{ts}` of synthetic run `i`: hourly from 2026-03-01T000000Z.
fn synthetic_ts(i: usize) -> String {
    format!("2026-03-{:02}T{:02}0000Z", 1 + i / 24, i % 24)
}

/// Writes `n` synthetic hourly runs (no DuckDB needed) under `dir`: each
/// export file is the one of the hour before with a few bytes changed
/// and 2 KiB of new (incompressible) bytes at the end, as a table export
/// grows; `load.sql` and `schema.sql` stay the same.
fn synthetic_runs(dir: &Path, n: usize) {
    let mut rng = SeededRng(11);
    let mut files: Vec<(&str, Vec<u8>)> = vec![
        ("shared", rng.bytes(200 << 10)),
        (
            "tenants/0b6c2b7e-3c1f-4a7e-9d55-1f0c9a2f4e11",
            rng.bytes(100 << 10),
        ),
    ];
    for i in 0..n {
        for (place, bytes) in &mut files {
            for _ in 0..3 {
                let at = rng.below(bytes.len() as u64) as usize;
                bytes[at] ^= 0x5a;
            }
            bytes.extend(rng.bytes(2 << 10));
            let d = dir.join(place).join(synthetic_ts(i));
            fs::create_dir_all(&d).unwrap();
            // Framed as Parquet (magic at both ends, a footer length), so
            // a drill's structure check passes.
            let mut file = b"PAR1".to_vec();
            file.extend_from_slice(bytes);
            file.extend_from_slice(&64u32.to_le_bytes());
            file.extend_from_slice(b"PAR1");
            fs::write(d.join("events.parquet"), file).unwrap();
            fs::write(d.join("schema.sql"), b"CREATE TABLE events(x BLOB);\n").unwrap();
            fs::write(d.join("load.sql"), b"COPY events FROM 'events.parquet';\n").unwrap();
        }
    }
}

#[test]
fn runs_stored_as_patches_restore_check_and_survive_forget_and_prune() {
    // 40 runs: past the chain cap of 32, so run 33 starts a new chain.
    const RUNS: usize = 40;
    let s = Scratch::new();
    let orig = s.path("orig");
    synthetic_runs(&orig, RUNS);
    let backup = s.path("backup");
    copy_tree(&orig, &backup);
    s.ok(&["init"]);

    // The first ten runs, then the rest with the first ten gone from the
    // backup path (HitKeep keeps 24): the base of run 10 is rebuilt from
    // the store.
    let r = import(&s, &backup, &["--min-age", "0"]);
    assert_eq!(r["imported"].as_array().unwrap().len(), RUNS);
    let store_all = store_bytes(&s.store());
    let export_bytes = file_bytes(&orig);
    assert!(
        (store_all as f64) < 0.15 * export_bytes as f64,
        "store {store_all} bytes for {export_bytes} bytes of exports"
    );

    let s2 = Scratch::new();
    s2.ok(&["init"]);
    let partial = s2.path("backup");
    fs::create_dir_all(&partial).unwrap();
    for place in ["shared", "tenants"] {
        copy_tree(&orig.join(place), &partial.join(place));
    }
    for i in 10..RUNS {
        for d in export_dirs(&partial, &synthetic_ts(i)) {
            fs::rename(&d, d.with_extension("later")).unwrap();
        }
    }
    import(&s2, &partial, &["--min-age", "0"]);
    for i in 0..RUNS {
        for d in export_dirs(&orig, &synthetic_ts(i)) {
            let rel = d.strip_prefix(&orig).unwrap();
            let here = partial.join(rel);
            if i < 10 {
                fs::remove_dir_all(&here).unwrap();
            } else {
                fs::rename(here.with_extension("later"), &here).unwrap();
            }
        }
    }
    let r = import(&s2, &partial, &["--min-age", "0"]);
    assert_eq!(r["imported"].as_array().unwrap().len(), RUNS - 10);

    // Both stores give back every run byte for byte and check clean,
    // reading every pack.
    for st in [&s, &s2] {
        let out = st.path("out");
        for i in 0..RUNS {
            restore_run(st, &synthetic_ts(i), &out);
        }
        assert_same_tree(&orig, &out);
        st.ok(&["check", "--read-data"]);
    }

    // The newest run, 6 patches above run 33, drills clean.
    let d = parse_json(&s.ok(&["--json", "drill", "--snapshot", &synthetic_ts(RUNS - 1)]));
    assert_eq!(d["passed"], true, "{d:#}");

    // Forgetting all but the last 7 runs frees the first chain (runs
    // 0-32), and keeps every base the 7 need.
    let before = pack_bytes(&s.store());
    s.ok(&["forget", "--keep-last", "7"]);
    s.ok(&["prune", "--max-unused", "0"]);
    let after = pack_bytes(&s.store());
    eprintln!("{RUNS} runs: exports {export_bytes} bytes, store {store_all}; packs {before} -> {after} bytes after keeping the last 7");
    assert!(
        after * 10 < before * 6,
        "prune freed too little: {before} -> {after} bytes"
    );
    s.ok(&["check", "--read-data"]);
    let out = s.path("out-after-prune");
    for i in RUNS - 7..RUNS {
        restore_run(&s, &synthetic_ts(i), &out);
        for d in export_dirs(&orig, &synthetic_ts(i)) {
            let rel = d.strip_prefix(&orig).unwrap();
            assert_same_tree(&d, &out.join(rel));
        }
    }
}

/// Moves runs `from..to` of `backup` aside (`{ts}.later`), or back.
fn set_aside(backup: &Path, runs: std::ops::Range<usize>, aside: bool) {
    for i in runs {
        let ts = synthetic_ts(i);
        for place in ["shared", "tenants/0b6c2b7e-3c1f-4a7e-9d55-1f0c9a2f4e11"] {
            let d = backup.join(place).join(&ts);
            let later = d.with_extension("later");
            let (a, b) = if aside { (d, later) } else { (later, d) };
            fs::rename(a, b).unwrap();
        }
    }
}

fn pack_names(store: &Path) -> BTreeSet<PathBuf> {
    fs::read_dir(store.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

#[test]
fn a_run_is_not_patched_onto_a_damaged_base_and_an_unchanged_run_stores_no_data() {
    const RUNS: usize = 12;
    let s = Scratch::new();
    let orig = s.path("orig");
    synthetic_runs(&orig, RUNS);
    // Run 12: run 11 again, an hour later (nothing changed).
    for place in ["shared", "tenants/0b6c2b7e-3c1f-4a7e-9d55-1f0c9a2f4e11"] {
        copy_tree(
            &orig.join(place).join(synthetic_ts(RUNS - 1)),
            &orig.join(place).join(synthetic_ts(RUNS)),
        );
    }
    let backup = s.path("backup");
    copy_tree(&orig, &backup);
    s.ok(&["init"]);
    set_aside(&backup, 9..RUNS + 1, true);
    import(&s, &backup, &["--min-age", "0"]);
    let before = pack_names(&s.store());
    set_aside(&backup, 9..10, false);
    import(&s, &backup, &["--min-age", "0"]);

    // Damage run 9's patches (its data pack: every entry a data chunk).
    let data_pack = pack_names(&s.store())
        .difference(&before)
        .find(|p| {
            let t = cairn_format::pack::parse_pack(&fs::read(p).unwrap()).unwrap();
            t.entries
                .iter()
                .all(|e| e.kind == cairn_format::pack::BlobKind::Data)
        })
        .cloned()
        .expect("run 9 wrote a data pack");
    let mut bytes = fs::read(&data_pack).unwrap();
    bytes[16 + 12 + 4] ^= 0x40;
    fs::write(&data_pack, &bytes).unwrap();

    // Run 10 is stored as its bytes, not as a patch on the damaged run 9
    // (its patches are read before they are built on, damage nobody has
    // noticed yet included); after a repair drops the damage, runs 11 and
    // 12 build on run 10. Every one of them restores whole; only run 9
    // stays damaged.
    set_aside(&backup, 10..11, false);
    let r = import(&s, &backup, &["--min-age", "0"]);
    assert_eq!(r["imported"].as_array().unwrap().len(), 1);
    assert_eq!(s.cairn(&["repair"]).status.code(), Some(1));
    set_aside(&backup, 11..RUNS + 1, false);
    let r = import(&s, &backup, &["--min-age", "0"]);
    assert_eq!(r["imported"].as_array().unwrap().len(), RUNS + 1 - 11);
    let out = s.path("out");
    for i in 10..=RUNS {
        restore_run(&s, &synthetic_ts(i), &out);
        for d in export_dirs(&orig, &synthetic_ts(i)) {
            assert_same_tree(&d, &out.join(d.strip_prefix(&orig).unwrap()));
        }
    }
    let check = s.cairn(&["check"]);
    assert_eq!(check.status.code(), Some(1));
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(report.contains(&synthetic_ts(9)), "{report}");
    for i in 10..=RUNS {
        assert!(!report.contains(&synthetic_ts(i)), "run {i}: {report}");
    }

    // The unchanged run took the records of the run before: no data.
    let last = parse_json(&s.ok(&["--json", "show", &synthetic_ts(RUNS)]));
    assert_eq!(last["new_data_bytes"], 0, "{last:#}");
}
