//! The HitKeep boundary a snapshot records (`snapshot --json` →
//! `boundary`), one test per warning: a tenant that vanished, the
//! control-plane db outside the data path (or missing, or empty), an
//! archive directory that moved away, transient maintenance files, an
//! `s3://` archive, and what `show` prints. `--strict` refuses problems
//! with one line and leaves the store as it was.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::common::*;

/// `cairn --json snapshot --data-path DATA extra...`, parsed.
fn snap(s: &Scratch, data: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["--json", "snapshot", "--data-path", data.to_str().unwrap()];
    args.extend_from_slice(extra);
    parse_json(&s.ok(&args))
}

/// Ids of the tenants whose database is in the boundary.
fn tenants_with_db(b: &Value) -> Vec<String> {
    b["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| !t["db"].is_null())
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

fn findings(b: &Value) -> Vec<String> {
    b["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

/// `ls --json` entries: (path, class) of files.
fn ls_files(s: &Scratch, id: &str) -> Vec<(String, String)> {
    let v = parse_json(&s.ok(&["--json", "ls", id]));
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "file")
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_string(),
                e["class"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn snapshot_count(s: &Scratch) -> usize {
    parse_json(&s.ok(&["--json", "list"]))
        .as_array()
        .unwrap()
        .len()
}

/// `--strict` is refused with one line naming `needle`; the store (but
/// its index cache and lock record) is byte-for-byte as before.
fn assert_strict_refused(s: &Scratch, args: &[&str], needle: &str) {
    let before = store_state(&s.store());
    let snaps = snapshot_count(s);
    let mut full = vec!["snapshot", "--strict"];
    full.extend_from_slice(args);
    let err = s.fails(&full);
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
    assert!(err.contains("--strict"), "{err}");
    assert!(
        err.contains(needle),
        "refusal does not name {needle:?}: {err}"
    );
    assert_eq!(
        store_state(&s.store()),
        before,
        "a refused snapshot changed the store"
    );
    assert_eq!(snapshot_count(s), snaps);
}

#[test]
fn vanished_tenant_is_a_finding_and_strict_refuses_leaving_the_store_unchanged() {
    let s = Scratch::new();
    let data = s.path("data");
    tiny_data_path(&data);
    s.ok(&["init"]);
    let first = snap(&s, &data, &[]);
    let b = &first["boundary"];
    assert_eq!(b["findings"], json!([]), "{b}");
    assert_eq!(b["consistent"], json!(true));
    let tenants = tenants_with_db(b);
    assert_eq!(tenants.len(), 3, "{b}");
    for t in &tenants {
        let db = &b["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == *t)
            .unwrap()["db"];
        assert_eq!(db["path"], json!(format!("tenants/{t}/hitkeep.db")));
        assert!(db["iteration"].as_u64().unwrap() > 0, "{db}");
        assert_eq!(
            db["size"].as_u64().unwrap(),
            fs::metadata(data.join("tenants").join(t).join("hitkeep.db"))
                .unwrap()
                .len()
        );
    }

    // A team purge (or a lost disk) removes one tenant directory.
    let gone = tenants[1].clone();
    fs::remove_dir_all(data.join("tenants").join(&gone)).unwrap();
    assert_strict_refused(&s, &["--data-path", data.to_str().unwrap()], &gone);

    // Without --strict the snapshot is taken, with the finding.
    let second = snap(&s, &data, &[]);
    let b = &second["boundary"];
    let f = findings(b);
    assert!(
        f.iter()
            .any(|x| x.contains(&gone) && x.contains("vanished")),
        "{f:?}"
    );
    assert_eq!(b["consistent"], json!(false), "{b}");
    assert!(!tenants_with_db(b).contains(&gone));
    assert_eq!(tenants_with_db(b).len(), 2);

    // A tenant that appears is worth a note, not a refusal.
    let new = "0d7f0e0e-1111-4222-8333-444455556666";
    copy_tree(
        &data.join("tenants").join(&tenants[0]),
        &data.join("tenants").join(new),
    );
    let third = snap(&s, &data, &["--strict"]);
    let b = &third["boundary"];
    let f = findings(b);
    assert!(
        f.iter().any(|x| x.contains(new) && x.contains("appeared")),
        "{f:?}"
    );
    assert_eq!(b["consistent"], json!(true), "{b}");
    assert!(tenants_with_db(b).contains(&new.to_string()));
}

#[test]
fn control_plane_db_outside_the_data_path_is_captured_under_root_db_and_restores() {
    let s = Scratch::new();
    let fx = cached_fixture("tiny-seed8-dbout", |d| {
        gen(&[
            "create",
            d.join("data").to_str().unwrap(),
            "--db",
            d.join("cp/hitkeep.db").to_str().unwrap(),
            "--scale",
            "tiny",
            "--seed",
            "8",
        ])
    });
    let data = s.path("data");
    let cp = s.path("cp");
    copy_tree(&fx.join("data"), &data);
    copy_tree(&fx.join("cp"), &cp);
    let db = cp.join("hitkeep.db");
    assert!(!data.join("hitkeep.db").exists());
    s.ok(&["init"]);

    // Not told where the db is: the control plane is missing.
    assert_strict_refused(
        &s,
        &["--data-path", data.to_str().unwrap()],
        "control-plane database",
    );

    let m = snap(&s, &data, &["--db", db.to_str().unwrap()]);
    let id = m["id"].as_str().unwrap().to_string();
    let b = &m["boundary"];
    assert_eq!(b["findings"], json!([]), "{b}");
    assert_eq!(b["control_plane"]["root"], json!("db"), "{b}");
    assert_eq!(
        b["control_plane"]["size"].as_u64().unwrap(),
        fs::metadata(&db).unwrap().len()
    );
    assert!(
        m["roots"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["label"] == "db" && r["path"] == json!(fs::canonicalize(&db).unwrap())),
        "{}",
        m["roots"]
    );
    let files = ls_files(&s, &id);
    let cps: Vec<_> = files
        .iter()
        .filter(|(_, c)| c == "control-plane-db")
        .collect();
    assert_eq!(
        cps,
        [&("db/hitkeep.db".to_string(), "control-plane-db".to_string())]
    );
    let tenant_dbs = files
        .iter()
        .filter(|(p, c)| c.starts_with("tenant-db:") && p.starts_with("data/tenants/"))
        .count();
    assert_eq!(tenant_dbs, 3, "{files:?}");

    // Snapshots after it take the db root from the parent like any file:
    // untouched, it is not read; touched (same bytes, a new mtime), only
    // its header area is read, as for a db inside the data path.
    let size = fs::metadata(&db).unwrap().len();
    let same = snap(&s, &data, &["--db", db.to_str().unwrap()]);
    assert_eq!(same["bytes_read"].as_u64(), Some(0), "{same}");
    let f = fs::OpenOptions::new().write(true).open(&db).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    drop(f);
    let touched = snap(&s, &data, &["--db", db.to_str().unwrap()]);
    let read = touched["bytes_read"].as_u64().unwrap();
    assert!(read > 0 && read <= 64 * 1024, "{read} bytes read of {size}");

    // Restored in place to a new host layout: the db goes to --db.
    let new = s.path("new");
    fs::create_dir(&new).unwrap();
    let (ndata, ndb) = (new.join("data"), new.join("cp/hitkeep.db"));
    s.ok(&[
        "restore",
        "--snapshot",
        &id,
        "--data-path",
        ndata.to_str().unwrap(),
        "--db",
        ndb.to_str().unwrap(),
        "--yes",
    ]);
    assert_eq!(fs::read(&ndb).unwrap(), fs::read(&db).unwrap());
    assert_eq!(
        fs::metadata(&ndb).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!ndata.join("hitkeep.db").exists());
    assert!(!ndata.join("db").exists());
    assert_eq!(files_under(&ndata), files_under(&data));
    for f in files_under(&data) {
        assert_eq!(
            fs::read(ndata.join(&f)).unwrap(),
            fs::read(data.join(&f)).unwrap(),
            "{}",
            f.display()
        );
    }
    assert_eq!(duckdb_counts(&[ndb]), duckdb_counts(&[db]));
}

#[test]
fn empty_control_plane_db_is_a_finding_and_strict_refuses() {
    let s = Scratch::new();
    let data = s.path("data");
    tiny_data_path(&data);
    s.ok(&["init"]);
    snap(&s, &data, &[]);
    fs::File::create(data.join("hitkeep.db")).unwrap(); // truncated to 0
    assert_strict_refused(&s, &["--data-path", data.to_str().unwrap()], "empty");
    let m = snap(&s, &data, &[]);
    let f = findings(&m["boundary"]);
    assert!(
        f.iter()
            .any(|x| x.contains("control-plane database") && x.contains("is empty")),
        "{f:?}"
    );
    assert_eq!(m["boundary"]["consistent"], json!(false));
}

#[test]
fn archive_directory_moved_away_is_a_finding() {
    let s = Scratch::new();
    let data = s.path("data");
    tiny_data_path(&data);
    s.ok(&["init"]);
    let archive = data.join("archive");
    let parquet = files_under(&archive);
    assert!(parquet.len() > 5, "{parquet:?}");
    let first = snap(&s, &data, &[]);
    assert_eq!(
        first["boundary"]["archive"],
        json!({"local": archive.to_str().unwrap()})
    );
    let archived = ls_files(&s, first["id"].as_str().unwrap())
        .into_iter()
        .filter(|(_, c)| c.starts_with("archive:"))
        .count();
    assert_eq!(archived, parquet.len());

    // Someone moves the archive to another disk and forgets the setting.
    let moved = s.path("archive-elsewhere");
    fs::rename(&archive, &moved).unwrap();
    assert_strict_refused(
        &s,
        &["--data-path", data.to_str().unwrap()],
        "archive directory disappeared",
    );
    let second = snap(&s, &data, &[]);
    let b = &second["boundary"];
    let f = findings(b);
    assert!(
        f.iter().any(|x| x.contains("archive directory disappeared")
            && x.contains(archive.to_str().unwrap())),
        "{f:?}"
    );
    assert_eq!(b["archive"], json!({"missing": archive.to_str().unwrap()}));
    assert_eq!(b["consistent"], json!(false));
    assert!(ls_files(&s, second["id"].as_str().unwrap())
        .iter()
        .all(|(_, c)| !c.starts_with("archive:")));

    // Told where it went: captured again, under the root `archive`.
    let third = snap(&s, &data, &["--archive-path", moved.to_str().unwrap()]);
    let b = &third["boundary"];
    assert_eq!(b["archive"], json!({"local": moved.to_str().unwrap()}));
    assert_eq!(b["findings"], json!([]), "{b}");
    let files = ls_files(&s, third["id"].as_str().unwrap());
    let archived: Vec<_> = files
        .iter()
        .filter(|(_, c)| c.starts_with("archive:"))
        .collect();
    assert_eq!(archived.len(), parquet.len(), "{files:?}");
    assert!(archived.iter().all(|(p, _)| p.starts_with("archive/")));
}

#[test]
fn transient_files_are_excluded_listed_and_not_in_ls() {
    let s = Scratch::new();
    let data = s.path("data");
    tiny_data_path(&data);
    s.ok(&["init"]);
    let tenant = fs::read_dir(data.join("tenants"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name()
        .into_string()
        .unwrap();
    let tdb = data.join("tenants").join(&tenant).join("hitkeep.db");
    let transient: Vec<PathBuf> = vec![
        PathBuf::from("hitkeep.db.compacting"),
        PathBuf::from(format!("tenants/{tenant}/hitkeep.db.pre-compact")),
        PathBuf::from(format!("tenants/{tenant}/hitkeep.db.split-work")),
        PathBuf::from(format!(
            "tenants/{tenant}/hitkeep.db.restore-1772323200.tmp"
        )),
        PathBuf::from("hitkeep.db.pre-restore.2026-03-08T120000Z"),
        PathBuf::from(format!(
            "tenants/{tenant}/hitkeep.db.wal.pre-restore.2026-03-08T120000Z"
        )),
    ];
    let clean = s.path("clean");
    copy_tree(&data, &clean);
    for t in &transient {
        fs::copy(&tdb, data.join(t)).unwrap();
    }
    // A transient directory is left out whole.
    let work_dir = PathBuf::from(format!("tenants/{tenant}.split-work"));
    fs::create_dir(data.join(&work_dir)).unwrap();
    fs::copy(&tdb, data.join(&work_dir).join("hitkeep.db")).unwrap();

    let m = snap(&s, &data, &[]);
    let b = &m["boundary"];
    let mut excluded: Vec<PathBuf> = b["excluded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            let p = PathBuf::from(x.as_str().unwrap());
            p.strip_prefix(&data).map(Path::to_owned).unwrap_or(p)
        })
        .collect();
    excluded.sort();
    let mut want: Vec<PathBuf> = transient
        .iter()
        .cloned()
        .chain([work_dir.clone()])
        .collect();
    want.sort();
    assert_eq!(excluded, want, "{b}");
    assert_eq!(b["findings"], json!([]), "{b}");
    assert_eq!(
        tenants_with_db(b).len(),
        3,
        "a transient copy counted as a tenant: {b}"
    );
    let id = m["id"].as_str().unwrap();
    let listed = ls_files(&s, id);
    for (p, _) in &listed {
        assert!(
            !want.iter().any(|w| p.starts_with(w.to_str().unwrap())),
            "transient {p} is in the snapshot"
        );
    }
    assert_eq!(listed.len(), files_under(&clean).len());
    let out = s.path("restored");
    s.ok(&[
        "restore",
        "--snapshot",
        id,
        "--target",
        out.to_str().unwrap(),
    ]);
    assert_same_tree(&clean, &out);
}

#[test]
fn s3_archive_path_is_recorded_as_external() {
    let s = Scratch::new();
    let data = s.path("data");
    tiny_data_path(&data);
    s.ok(&["init"]);
    let url = "s3://hitkeep-archive/prod";
    let m = snap(&s, &data, &["--archive-path", url]);
    let b = &m["boundary"];
    assert_eq!(b["archive"], json!({ "external": url }), "{b}");
    let f = findings(b);
    assert!(
        f.iter()
            .any(|x| x.contains(url) && x.contains("not captured")),
        "{f:?}"
    );
    assert!(m["roots"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["label"] != "archive"));
    let show = s.ok(&["show", m["id"].as_str().unwrap()]);
    assert!(
        show.contains(url) && show.contains("object storage"),
        "{show}"
    );
}

/// `--strict`'s help names what it refuses: vanished tenants, a missing or
/// empty control-plane db, a disappeared archive directory. An archive on
/// object storage is none of these: its finding is informational, so an
/// install with an s3:// archive can take `--strict` snapshots and they
/// read `consistent: true`. (Regression: `is_problem` once counted it.)
#[test]
fn s3_archive_alone_does_not_make_strict_refuse() {
    let s = Scratch::new();
    let data = s.path("data");
    tiny_data_path(&data);
    s.ok(&["init"]);
    let m = snap(
        &s,
        &data,
        &["--strict", "--archive-path", "s3://hitkeep-archive/prod"],
    );
    assert_eq!(
        m["boundary"]["consistent"],
        json!(true),
        "{}",
        m["boundary"]
    );
}

#[test]
fn show_prints_tenants_and_consistency() {
    let s = Scratch::new();
    let data = s.path("data");
    tiny_data_path(&data);
    s.ok(&["init"]);
    let first = snap(&s, &data, &[]);
    let tenants = tenants_with_db(&first["boundary"]);
    let text = s.ok(&["show"]);
    assert!(text.contains(first["id"].as_str().unwrap()), "{text}");
    assert!(text.contains("tenants: 3"), "{text}");
    for t in &tenants {
        assert!(
            text.lines()
                .any(|l| l.contains(t.as_str()) && l.contains("db ")),
            "tenant {t} not shown: {text}"
        );
    }
    assert!(text.contains("control plane: hitkeep.db"), "{text}");
    assert!(text.contains("consistency: complete"), "{text}");

    let gone = &tenants[0];
    fs::remove_dir_all(data.join("tenants").join(gone)).unwrap();
    let second = snap(&s, &data, &[]);
    let text = s.ok(&["show", "latest"]);
    assert!(text.contains(second["id"].as_str().unwrap()), "{text}");
    assert!(!text.contains("consistency: complete"), "{text}");
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("- ")
            && l.contains(gone.as_str())
            && l.contains("vanished")),
        "{text}"
    );
    let v = parse_json(&s.ok(&["--json", "show"]));
    assert_eq!(v["boundary"]["consistent"], json!(false));
    assert_eq!(v["id"], second["id"]);
    // The older snapshot still reads complete.
    let old = s.ok(&["show", first["id"].as_str().unwrap()]);
    assert!(old.contains("consistency: complete"), "{old}");
    assert!(old.contains(gone.as_str()), "{old}");
}
