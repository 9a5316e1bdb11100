//! Live capture: snapshots of DuckDB databases that a real DuckDB process
//! (`tests/hitkeep_writer.py`) writes and checkpoints continuously. Every
//! snapshot, restored and opened without any WAL, must be a committed
//! prefix of the writer's history (`tests/hitkeep_verify.py`), row counts
//! never go backwards, and a database whose capture gave up is absent
//! from its snapshot, never recorded torn.
//!
//! `CAIRN_LIVE_SNAPSHOTS` sets how many snapshots the live test takes
//! (default 12; run 100 or more locally).

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests")
        .join(name)
}

/// The writer process; killed on drop unless stopped.
struct LiveWriter {
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
    /// Database paths relative to the data path.
    dbs: Vec<String>,
}

impl LiveWriter {
    fn start(data: &Path) -> Self {
        assert!(have_duckdb(), "python3 with the duckdb package is required");
        let mut child = Command::new("python3")
            .arg(script("hitkeep_writer.py"))
            .arg(data)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the writer");
        let stdin = child.stdin.take();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let ready = parse_json(line.trim());
        assert_eq!(ready["ready"], Value::Bool(true), "{line}");
        let dbs = ready["dbs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string())
            .collect();
        Self {
            child,
            stdin,
            out,
            dbs,
        }
    }

    /// Closes its stdin, waits for it, and returns each database's final count.
    fn stop(mut self) -> BTreeMap<String, u64> {
        drop(self.stdin.take());
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        let status = self.child.wait().unwrap();
        let v = parse_json(line.trim());
        assert!(status.success(), "writer failed: {line}");
        v["dbs"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, d)| (k.clone(), d["count"].as_u64().unwrap()))
            .collect()
    }
}

impl Drop for LiveWriter {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One snapshot of the live data path.
struct Snap {
    id: String,
    /// `data/<rel>` of databases whose capture gave up.
    gave_up: Vec<String>,
    /// rel → captured iteration.
    iterations: BTreeMap<String, u64>,
    /// rel of databases captured with their WAL.
    with_wal: Vec<String>,
}

fn snap_of(v: &Value) -> Snap {
    let b = &v["boundary"];
    let mut iterations = BTreeMap::new();
    let mut with_wal = Vec::new();
    let dbs = std::iter::once(&b["control_plane"])
        .chain(b["tenants"].as_array().unwrap().iter().map(|t| &t["db"]));
    for d in dbs.filter(|d| !d.is_null()) {
        iterations.insert(
            d["path"].as_str().unwrap().to_string(),
            d["iteration"].as_u64().unwrap(),
        );
        if d["wal"] == Value::Bool(true) {
            with_wal.push(d["path"].as_str().unwrap().to_string());
        }
    }
    Snap {
        id: v["id"].as_str().unwrap().to_string(),
        gave_up: b["gave_up"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_str().unwrap().to_string())
            .collect(),
        iterations,
        with_wal,
    }
}

/// Keeps the evidence of a violation: the store, the data path as it was
/// left, and the restored snapshot, under /tmp/cairn-live-bug-<n>.
fn keep_evidence(s: &Scratch, data: &Path, restored: &Path, snap: &Snap) -> PathBuf {
    let mut n = std::process::id() as u64;
    let dir = loop {
        let d = PathBuf::from(format!("/tmp/cairn-live-bug-{n}"));
        if fs::create_dir(&d).is_ok() {
            break d;
        }
        n += 1;
    };
    copy_tree(&s.store(), &dir.join("store"));
    copy_tree(data, &dir.join("data-after"));
    copy_tree(restored, &dir.join("restored"));
    fs::write(dir.join("SNAPSHOT"), format!("{}\n", snap.id)).unwrap();
    dir
}

/// Runs `hitkeep_verify.py` on the directories (`allow_wal`: a WAL beside
/// a database is replayed instead of being an error); dir → rel → result.
fn verify(dirs: &[PathBuf], allow_wal: bool) -> BTreeMap<String, BTreeMap<String, Value>> {
    let out = Command::new("python3")
        .arg(script("hitkeep_verify.py"))
        .args(allow_wal.then_some("--allow-wal"))
        .args(dirs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "verify failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("verify json")
}

/// Removes every `*.wal` under `root`; returns how many.
fn remove_wals(root: &Path) -> usize {
    let wals: Vec<PathBuf> = files_under(root)
        .into_iter()
        .filter(|p| p.to_str().unwrap().ends_with(".wal"))
        .collect();
    for w in &wals {
        fs::remove_file(root.join(w)).unwrap();
    }
    wals.len()
}

/// Whether a failed snapshot failed only because a file (a WAL, deleted
/// by a checkpoint) vanished between the walk and its read: the bug
/// `files_vanishing_between_walk_and_read_do_not_fail_the_snapshot`
/// pins. Counted and reported, not a failure here, so this test keeps
/// checking what snapshots record.
fn vanished_during_read(err: &str) -> bool {
    err.trim().lines().count() == 1 && err.contains("No such file or directory")
}

/// What `live_run` saw.
struct LiveRun {
    /// Database paths relative to the data path.
    dbs: Vec<String>,
    snaps: Vec<Snap>,
    /// Errors of snapshots that failed because a file vanished.
    vanished: Vec<String>,
    /// The writer's final count per database.
    finals: BTreeMap<String, u64>,
    snapshot_time: Duration,
}

/// Creates a store, starts the writer on `data`, takes `n` snapshots while
/// it writes, and stops it.
fn live_run(s: &Scratch, data: &Path, n: usize) -> LiveRun {
    s.ok(&["init"]);
    let writer = LiveWriter::start(data);
    let dbs = writer.dbs.clone();
    assert_eq!(dbs.len(), 4, "control plane + 3 tenants: {dbs:?}");
    let started = Instant::now();
    let mut snaps: Vec<Snap> = Vec::new();
    let mut vanished: Vec<String> = Vec::new();
    while snaps.len() < n {
        assert!(
            vanished.len() <= 2 * n + 10,
            "too many failed snapshots: {vanished:?}"
        );
        let out = s.cairn(&["--json", "snapshot", "--data-path", data.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        if !out.status.success() {
            assert!(
                vanished_during_read(&err),
                "snapshot of the live data path failed: {err}"
            );
            vanished.push(err.trim().to_string());
            continue;
        }
        assert!(!err.contains("panicked"), "{err}");
        snaps.push(snap_of(&parse_json(&String::from_utf8_lossy(&out.stdout))));
        // Vary the phase against the writer's checkpoints.
        std::thread::sleep(Duration::from_millis((snaps.len() as u64 * 37) % 120));
    }
    let snapshot_time = started.elapsed();
    let finals = writer.stop();
    LiveRun {
        dbs,
        snaps,
        vanished,
        finals,
        snapshot_time,
    }
}

#[test]
fn live_writer_snapshots_restore_to_consistent_prefixes() {
    let n: usize = std::env::var("CAIRN_LIVE_SNAPSHOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let s = Scratch::new();
    let data = s.path("data");
    let LiveRun {
        dbs,
        snaps,
        vanished,
        finals,
        snapshot_time,
    } = live_run(&s, &data, n);

    // Restore every snapshot and open every database without a WAL.
    let mut last_count: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_iter: BTreeMap<String, u64> = BTreeMap::new();
    let mut problems: Vec<String> = Vec::new();
    let mut evidence: Option<PathBuf> = None;
    let mut wals_dropped = 0;
    let mut gave_up_total = 0;
    for (batch_no, batch) in snaps.chunks(10).enumerate() {
        let dirs: Vec<PathBuf> = batch
            .iter()
            .enumerate()
            .map(|(k, snap)| {
                let dir = s.path(&format!("restored-{}", batch_no * 10 + k));
                s.ok(&[
                    "restore",
                    "--snapshot",
                    &snap.id,
                    "--target",
                    dir.to_str().unwrap(),
                ]);
                wals_dropped += remove_wals(&dir);
                dir
            })
            .collect();
        let results = verify(&dirs, false);
        for (snap, dir) in batch.iter().zip(&dirs) {
            let found = &results[dir.to_str().unwrap()];
            let mut bad = Vec::new();
            for rel in &dbs {
                let gave_up = snap.gave_up.contains(&format!("data/{rel}"));
                gave_up_total += usize::from(gave_up);
                match (gave_up, found.get(rel)) {
                    (true, None) => continue,
                    (true, Some(_)) => bad.push(format!("{rel}: gave up but is in the snapshot")),
                    (false, None) => bad.push(format!("{rel}: missing from the snapshot")),
                    (false, Some(r)) => {
                        let errors = r["errors"].as_array().unwrap();
                        if !errors.is_empty() {
                            bad.push(format!("{rel}: {errors:?}"));
                            continue;
                        }
                        let count = r["count"].as_u64().unwrap();
                        let prev = last_count.insert(rel.clone(), count).unwrap_or(0);
                        if count < prev {
                            bad.push(format!("{rel}: count went back from {prev} to {count}"));
                        }
                        if count > finals[rel] {
                            bad.push(format!(
                                "{rel}: count {count} above the writer's final {}",
                                finals[rel]
                            ));
                        }
                        let it = snap.iterations.get(rel).copied().unwrap_or(0);
                        let prev_it = last_iter.insert(rel.clone(), it).unwrap_or(0);
                        if it < prev_it {
                            bad.push(format!("{rel}: iteration went back from {prev_it} to {it}"));
                        }
                    }
                }
            }
            if !bad.is_empty() {
                if evidence.is_none() {
                    evidence = Some(keep_evidence(&s, &data, dir, snap));
                }
                problems.push(format!("snapshot {}: {bad:?}", snap.id));
            }
        }
        for d in &dirs {
            fs::remove_dir_all(d).unwrap();
        }
    }
    eprintln!(
        "live capture: {} snapshots in {:.1}s ({} failed because a file vanished), \
         {} database captures gave up, {} WALs dropped before opening; \
         final counts {finals:?}, last snapshotted {last_count:?}",
        snaps.len(),
        snapshot_time.as_secs_f64(),
        vanished.len(),
        gave_up_total,
        wals_dropped,
    );
    assert!(
        problems.is_empty(),
        "{} of {} snapshots restore to something that is not a committed prefix \
         (evidence kept in {}): {problems:#?}",
        problems.len(),
        snaps.len(),
        evidence.unwrap().display()
    );
    // Not vacuous: the writer was really writing while cairn read.
    for rel in &dbs {
        assert!(finals[rel] > 0, "{rel} never written");
    }
    let first: u64 = snaps[0].iterations.values().sum();
    let last: u64 = snaps[snaps.len() - 1].iterations.values().sum();
    assert!(
        last > first,
        "no checkpoint between the first and last snapshot"
    );
}

/// `--with-wal` restores the WAL captured with each database. The WAL is
/// read after its database, so a checkpoint in between leaves a pair
/// DuckDB refuses: "This WAL was created for this database file, but the
/// WAL checkpoint iteration does not match the database file" (about one
/// pair in ten with the live writer). The restored database does not open
/// until its WAL is deleted by hand; a plain `restore --target` puts the
/// same WAL beside it. The pair should be checked (the WAL header names
/// the checkpoint iteration it follows) and a mismatched WAL left out or
/// read again.
#[test]
fn with_wal_restores_of_live_snapshots_open_in_duckdb() {
    let s = Scratch::new();
    let data = s.path("data");
    let run = live_run(&s, &data, 20);
    let mut problems = Vec::new();
    let mut evidence = None;
    let mut pairs = 0;
    let mut dirs = Vec::new();
    for (i, snap) in run.snaps.iter().enumerate() {
        if snap.with_wal.is_empty() {
            continue;
        }
        pairs += snap.with_wal.len();
        let dir = s.path(&format!("with-wal-{i}"));
        s.ok(&[
            "restore",
            "--snapshot",
            &snap.id,
            "--data-path",
            dir.to_str().unwrap(),
            "--with-wal",
            "--yes",
        ]);
        for rel in &snap.with_wal {
            assert!(
                dir.join(format!("{rel}.wal")).exists(),
                "{rel}.wal not restored"
            );
        }
        dirs.push((snap, dir));
    }
    assert!(pairs > 0, "no snapshot captured a WAL");
    let paths: Vec<PathBuf> = dirs.iter().map(|(_, d)| d.clone()).collect();
    let results = verify(&paths, true);
    for (snap, dir) in &dirs {
        for (rel, r) in &results[dir.to_str().unwrap()] {
            let errors = r["errors"].as_array().unwrap();
            if !errors.is_empty() {
                if evidence.is_none() {
                    evidence = Some(keep_evidence(&s, &data, dir, snap));
                }
                problems.push(format!("snapshot {} {rel}: {errors:?}", snap.id));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {pairs} database+WAL pairs restored with --with-wal do not open as a committed \
         prefix (evidence kept in {}): {problems:#?}",
        problems.len(),
        evidence.unwrap().display()
    );
}

/// A file that disappears between the walk and its read (a WAL that a
/// checkpoint folds in and deletes, a staged import that is processed)
/// fails the whole snapshot with `No such file or directory`, instead of
/// being left out like a file that vanished during the walk. With a
/// running HitKeep (or the live writer above) this fails a large share of
/// snapshots.
#[test]
fn files_vanishing_between_walk_and_read_do_not_fail_the_snapshot() {
    let s = Scratch::new();
    let data = s.path("data");
    let tenant = data.join("tenants/5b0e2c62-7a1b-4d7e-9a51-1c2d3e4f5a6b");
    fs::create_dir_all(&tenant).unwrap();
    fs::create_dir_all(data.join("imports/site")).unwrap();
    fs::write(data.join("hitkeep.db"), b"control plane").unwrap();
    fs::write(tenant.join("hitkeep.db"), b"tenant").unwrap();
    for i in 0..50 {
        fs::write(
            data.join(format!("imports/site/{i}.csv")),
            vec![b'x'; 20_000],
        )
        .unwrap();
    }
    s.ok(&["init"]);
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let stop = stop.clone();
        let (wal, upload) = (
            tenant.join("hitkeep.db.wal"),
            data.join("imports/site/upload.csv"),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                fs::write(&wal, b"wal").unwrap();
                fs::write(&upload, b"upload").unwrap();
                std::thread::yield_now();
                let _ = fs::remove_file(&wal);
                let _ = fs::remove_file(&upload);
                std::thread::yield_now();
            }
        })
    };
    let mut failures = Vec::new();
    for _ in 0..20 {
        let out = s.cairn(&[
            "snapshot",
            "--full-read",
            "--data-path",
            data.to_str().unwrap(),
        ]);
        if !out.status.success() {
            failures.push(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
    }
    stop.store(true, Ordering::Relaxed);
    flipper.join().unwrap();
    assert!(
        failures.is_empty(),
        "{} of 20 snapshots failed: {failures:#?}",
        failures.len()
    );
}

/// Keeps rewriting a counter inside the live database header of `db`
/// (so its checksum never matches and it never reads the same twice)
/// until dropped: a database that never gives a stable read.
struct HeaderChurn {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HeaderChurn {
    fn start(db: &Path) -> Self {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(db)
            .unwrap();
        let mut it = [0u8; 8];
        file.read_exact_at(&mut it, 4096 + 8).unwrap();
        let h1 = u64::from_le_bytes(it);
        file.read_exact_at(&mut it, 8192 + 8).unwrap();
        let h2 = u64::from_le_bytes(it);
        let live = if h1 >= h2 { 4096 } else { 8192 };
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n: u64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    file.write_all_at(&n.to_le_bytes(), live + 2048).unwrap();
                    std::thread::yield_now();
                }
            })
        };
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for HeaderChurn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn first_tenant(data: &Path) -> String {
    let mut t: Vec<String> = fs::read_dir(data.join("tenants"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    t.sort();
    t.remove(0)
}

#[test]
fn a_database_that_never_reads_stable_is_left_out_and_reported() {
    let s = Scratch::new();
    let data = s.path("data");
    tiny_data_path(&data);
    s.ok(&["init"]);
    let t = first_tenant(&data);
    let rel = format!("tenants/{t}/hitkeep.db");
    let churn = HeaderChurn::start(&data.join(&rel));
    let out = s.cairn(&["--json", "snapshot", "--data-path", data.to_str().unwrap()]);
    drop(churn);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    let m = parse_json(&String::from_utf8_lossy(&out.stdout));
    let b = &m["boundary"];
    assert_eq!(
        b["gave_up"],
        serde_json::json!([format!("data/{rel}")]),
        "{b}"
    );
    assert!(
        b["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f.as_str().unwrap().contains("gave up") && f.as_str().unwrap().contains(&rel)),
        "{b}"
    );
    assert_eq!(b["consistent"], Value::Bool(false));
    assert!(err.contains(&rel) && err.contains("left out"), "{err}");
    let tb = b["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == t.as_str());
    assert!(tb.is_none_or(|x| x["db"].is_null()), "{b}");
    // Not in the snapshot at all: not listed, not restored.
    let ls = parse_json(&s.ok(&["--json", "ls", m["id"].as_str().unwrap()]));
    assert!(
        ls["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["path"] != rel.as_str()),
        "a gave-up database is in the snapshot"
    );
    let out = s.path("restored");
    s.ok(&[
        "restore",
        "--snapshot",
        m["id"].as_str().unwrap(),
        "--target",
        out.to_str().unwrap(),
    ]);
    assert!(!out.join(&rel).exists());
    // The other databases are whole and open.
    let others: Vec<PathBuf> = files_under(&out)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "hitkeep.db"))
        .map(|p| out.join(p))
        .collect();
    assert_eq!(others.len(), 3, "{others:?}");
    assert!(duckdb_counts(&others).iter().all(|c| c.len() > 3));
}

/// ARCHITECTURE: a database whose capture gave up is "a finding that
/// `--strict` refuses". The strict check runs on a draft boundary before
/// anything is read (snapshot.rs step 2, `draft(&[], ..)`), so gave-up
/// databases never reach it and `--strict` records the incomplete
/// snapshot.
#[test]
fn strict_refuses_a_snapshot_whose_capture_gave_up() {
    let s = Scratch::new();
    let data = s.path("data");
    tiny_data_path(&data);
    s.ok(&["init"]);
    s.snapshot(&data);
    let before = store_state(&s.store());
    let t = first_tenant(&data);
    let churn = HeaderChurn::start(&data.join(format!("tenants/{t}/hitkeep.db")));
    let out = s.cairn(&[
        "snapshot",
        "--strict",
        "--data-path",
        data.to_str().unwrap(),
    ]);
    drop(churn);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "--strict recorded a snapshot without {t}'s database: {err}"
    );
    assert!(err.contains("gave up"), "{err}");
    assert_eq!(
        store_state(&s.store()),
        before,
        "a refused snapshot changed the store"
    );
}
