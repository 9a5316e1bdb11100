//! Restore drills (`cairn drill`, `cairn drills`) on real DuckDB data
//! paths: a good snapshot passes every step (and DuckDB itself opens every
//! database as the external check); a damaged database header, a
//! truncated Parquet archive, a tenant lost between snapshots and a
//! failing `--validate-cmd` each fail the step named for it; the record
//! is kept in the store either way.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::*;

/// Opens each database read-only in DuckDB and counts its tables.
const DUCKDB_CHECK: &str = "python3 -c 'import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=True); assert c.execute(\"SELECT count(*) FROM duckdb_tables()\").fetchone()[0] > 0' {db}";

/// A scratch area with a store and a copy of the tiny data path.
fn setup() -> (Scratch, PathBuf) {
    let s = Scratch::new();
    let data = s.path("data");
    tiny_data_path(&data);
    s.ok(&["init"]);
    (s, data)
}

/// Runs `cairn --json drill args...`; returns the exit success and the record.
fn drill(s: &Scratch, args: &[&str]) -> (bool, Value) {
    let mut all = vec!["--json", "drill"];
    all.extend_from_slice(args);
    let out = s.cairn(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let record = parse_json(&String::from_utf8_lossy(&out.stdout));
    (out.status.success(), record)
}

fn step<'a>(record: &'a Value, name: &str) -> &'a Value {
    record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {record:#}"))
}

fn status(record: &Value, name: &str) -> String {
    step(record, name)["status"].as_str().unwrap().to_string()
}

fn problems(record: &Value, name: &str) -> String {
    step(record, name)["problems"].to_string()
}

/// The steps that failed.
fn failed(record: &Value) -> Vec<String> {
    record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "failed")
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

fn tenant_dbs(data: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(data.join("tenants"))
        .unwrap()
        .map(|e| e.unwrap().path().join("hitkeep.db"))
        .collect();
    out.sort();
    out
}

#[test]
fn a_good_snapshot_passes_every_step_and_is_recorded() {
    let (s, data) = setup();
    let id = s.snapshot(&data)["id"].as_str().unwrap().to_string();
    let (ok, r) = drill(
        &s,
        &[
            "--validate-cmd",
            DUCKDB_CHECK,
            "--hitkeep-version",
            "2.13.1",
        ],
    );
    assert!(ok, "drill failed: {r:#}");
    assert_eq!(r["passed"], true);
    for name in [
        "restore",
        "file-hashes",
        "duckdb-structure",
        "parquet-structure",
        "control-plane",
        "tenants",
        "archives",
        "validate-cmd",
    ] {
        assert_eq!(status(&r, name), "passed", "{name}: {r:#}");
    }
    assert_eq!(r["snapshot"], id.as_str());
    assert_eq!(r["hitkeep_version"], "2.13.1");
    assert_eq!(r["duckdb_versions"][0], "v2.0.0");
    assert!(
        step(&r, "validate-cmd")["detail"]
            .as_str()
            .unwrap()
            .contains("4 databases"),
        "{r:#}"
    );
    // The temporary restore is gone; the record is in the store.
    let target = PathBuf::from(r["target"].as_str().unwrap());
    assert!(!target.exists(), "{} left behind", target.display());
    let saved = PathBuf::from(r["record_path"].as_str().unwrap());
    assert!(saved.starts_with(s.store().join("drills")));
    let listed = parse_json(&s.ok(&["--json", "drills"]));
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], r["id"]);
    assert_eq!(listed[0]["passed"], true);
    let text = s.ok(&["drills"]);
    assert!(text.contains(&id) && text.contains("passed"), "{text}");

    // --target and --keep: restored there and left in place.
    let kept = s.path("kept");
    let (ok, r2) = drill(&s, &["--target", kept.to_str().unwrap(), "--keep"]);
    assert!(ok, "{r2:#}");
    assert_eq!(r2["kept"], true);
    assert!(kept.join("hitkeep.db").is_file());
    assert_eq!(
        parse_json(&s.ok(&["--json", "drills"]))
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // A non-empty target is refused with one line, nothing recorded.
    let err = s.fails(&["drill", "--target", kept.to_str().unwrap()]);
    assert!(
        err.contains("not empty") && !err.contains("--overwrite") && err.lines().count() == 1,
        "{err}"
    );
    assert_eq!(
        parse_json(&s.ok(&["--json", "drills"]))
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn a_damaged_database_header_fails_duckdb_structure() {
    let (s, data) = setup();
    // Damage the older (not live) database header of one tenant: the
    // snapshot takes the file as it is, DuckDB would still open it, but
    // the drill must say the file is not sound.
    let db = tenant_dbs(&data)[0].clone();
    let f = OpenOptions::new().read(true).write(true).open(&db).unwrap();
    let mut it = [0u8; 8];
    f.read_exact_at(&mut it, 4096 + 8).unwrap();
    let it1 = u64::from_le_bytes(it);
    f.read_exact_at(&mut it, 8192 + 8).unwrap();
    let it2 = u64::from_le_bytes(it);
    let (older, name) = if it1 < it2 {
        (4096u64, "database header 1")
    } else {
        (8192, "database header 2")
    };
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, older + 1000).unwrap();
    f.write_all_at(&[b[0] ^ 0x5a], older + 1000).unwrap();
    drop(f);
    s.snapshot(&data);
    let (ok, r) = drill(&s, &[]);
    assert!(!ok, "drill should fail: {r:#}");
    assert_eq!(r["passed"], false);
    assert_eq!(status(&r, "duckdb-structure"), "failed");
    let p = problems(&r, "duckdb-structure");
    let tenant = db.parent().unwrap().file_name().unwrap().to_str().unwrap();
    assert!(
        p.contains(tenant) && p.contains(&format!("{name}: checksum mismatch")),
        "{p}"
    );
    // The tenant's database is not sound, so the tenants step fails too;
    // the restore and the hashes are fine (the bytes are as snapshotted).
    assert_eq!(failed(&r), vec!["duckdb-structure", "tenants"]);
    assert_eq!(parse_json(&s.ok(&["--json", "drills"]))[0]["passed"], false);
}

#[test]
fn a_truncated_parquet_archive_fails_parquet_structure() {
    let (s, data) = setup();
    let archive = fs::read_dir(data.join("archive"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .min()
        .unwrap();
    let len = fs::metadata(&archive).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&archive)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    s.snapshot(&data);
    let (ok, r) = drill(&s, &[]);
    assert!(!ok, "{r:#}");
    assert_eq!(failed(&r), vec!["parquet-structure"]);
    let p = problems(&r, "parquet-structure");
    let name = archive.file_name().unwrap().to_str().unwrap();
    assert!(
        p.contains(name) && p.contains("no PAR1 magic at the end"),
        "{p}"
    );
}

#[test]
fn a_tenant_lost_since_the_previous_snapshot_fails_tenants() {
    let (s, data) = setup();
    s.snapshot(&data);
    let lost = tenant_dbs(&data)[1].parent().unwrap().to_owned();
    let id = lost.file_name().unwrap().to_str().unwrap().to_string();
    fs::remove_dir_all(&lost).unwrap();
    s.snapshot(&data);
    let (ok, r) = drill(&s, &["--snapshot", "latest"]);
    assert!(!ok, "{r:#}");
    assert_eq!(failed(&r), vec!["tenants"]);
    let p = problems(&r, "tenants");
    assert!(p.contains(&id) && p.contains("vanished"), "{p}");
    // Naming a default tenant the snapshot lacks fails the step too.
    let (ok, r) = drill(&s, &["--default-tenant", &id]);
    assert!(!ok);
    assert!(
        problems(&r, "tenants").contains(&format!("default tenant {id}")),
        "{r:#}"
    );
}

#[test]
fn a_failing_validate_cmd_fails_its_step() {
    let (s, data) = setup();
    s.snapshot(&data);
    let victim = tenant_dbs(&data)[2]
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    // Fails for one tenant's database only, the way a real check would.
    let cmd = format!(
        "sh -c 'case \"$1\" in *{victim}*) echo \"table hits: 0 rows\" >&2; exit 3;; esac' check {{db}}"
    );
    let (ok, r) = drill(&s, &["--validate-cmd", &cmd]);
    assert!(!ok, "{r:#}");
    assert_eq!(failed(&r), vec!["validate-cmd"]);
    let p = problems(&r, "validate-cmd");
    assert!(
        p.contains(&victim) && p.contains("table hits: 0 rows") && p.contains("exit status: 3"),
        "{p}"
    );
    assert_eq!(
        step(&r, "validate-cmd")["problems"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // With --quiet the failure is still said, in one line naming the step.
    let out = s.cairn(&["--quiet", "drill", "--validate-cmd", &cmd]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("FAILED") && err.contains("validate-cmd") && err.trim().lines().count() == 1,
        "{err}"
    );
    // A command without {db}, or with it quoted, is refused up front.
    let err = s.fails(&["drill", "--validate-cmd", "true"]);
    assert!(err.contains("{db}"), "{err}");
    let err = s.fails(&["drill", "--validate-cmd", "test -f '{db}'"]);
    assert!(err.contains("without quotes"), "{err}");
}
