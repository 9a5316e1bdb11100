//! Crash safety: `cairn snapshot` killed with SIGKILL at random points.
//!
//! One generated data path (tiny scale) and one store. Each trial changes
//! the data path (files of its own under `extra/` most trials, a simulated
//! hour of HitKeep traffic from the generator every few), records a digest
//! of it (every file's blake3, mode and mtime, every symlink target), starts
//! `cairn snapshot` (incremental, or `--full-read`) and kills it with
//! SIGKILL after a seeded random delay between 0 and the measured duration
//! of such a snapshot. Then:
//!
//! - `list` succeeds: leftover temp files and the dead holder's lock record
//!   do not get in its way (the stale lock is reported, naming the pid),
//!   and the temp files are gone afterwards;
//! - no partial snapshot is visible: `list` shows exactly the manifests on
//!   disk, and at most one new snapshot, which must restore to the digest
//!   of the data path as it was when the killed run started;
//! - `check --read-data` finds no damage;
//! - the next snapshot succeeds and restores byte-identically, and so does
//!   an older snapshot picked at random;
//!
//! and at the end every snapshot in the store restores to the data path as
//! it was when that snapshot was taken.
//!
//! The store's pack target is set to 1 MiB, the smallest allowed, so a
//! run seals several packs and kills also land between them.
//!
//! `CAIRN_CRASH_TRIALS` sets the number of trials (default 12),
//! `CAIRN_CRASH_SEED` the seed (default 1). The mutations and delays
//! follow from the seed; where in the run a delay lands depends on the
//! machine's speed. A failure names the trial, seed and delay.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn_format::StoreConfig;

use crate::common::*;

type Digest = BTreeMap<PathBuf, (String, u32, Vec<u8>, i64)>;

/// Age the data path with the generator every this many trials.
const AGE_EVERY: u64 = 8;

/// splitmix64: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn bytes(&mut self, n: usize, compressible: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        if compressible {
            let words: [&[u8]; 6] = [
                b"pageview ",
                b"/pricing ",
                b"referrer=google ",
                b"utm_source=x ",
                b"\n",
                b"2026-03-01T00:00:00Z ",
            ];
            while out.len() < n {
                out.extend_from_slice(words[self.below(6) as usize]);
            }
        } else {
            while out.len() < n {
                out.extend_from_slice(&self.next().to_le_bytes());
            }
        }
        out.truncate(n);
        out
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

/// Cheap changes under `DATA/extra`: new, grown, patched, shrunk, renamed
/// and deleted files (small to a few MiB), symlinks and mode changes.
fn mutate_extra(data: &Path, rng: &mut Rng) {
    let dir = data.join("extra");
    fs::create_dir_all(dir.join("sub")).unwrap();
    for _ in 0..1 + rng.below(4) {
        let sub = if rng.chance(30) {
            dir.join("sub")
        } else {
            dir.clone()
        };
        let existing: Vec<PathBuf> = files_in(&sub)
            .into_iter()
            .filter(|p| fs::symlink_metadata(p).unwrap().is_file())
            .collect();
        let pick = |rng: &mut Rng| -> Option<PathBuf> {
            (!existing.is_empty())
                .then(|| existing[rng.below(existing.len() as u64) as usize].clone())
        };
        match rng.below(8) {
            0 | 1 => {
                let size = match rng.below(4) {
                    0 => rng.below(100) as usize,
                    1 => 1 + rng.below(16 << 10) as usize,
                    2 => (16 << 10) + rng.below(256 << 10) as usize,
                    _ => (1 << 20) + rng.below(5 << 20) as usize,
                };
                let compressible = rng.chance(50);
                let name = sub.join(format!("f{:08x}", rng.next() as u32));
                fs::write(name, rng.bytes(size, compressible)).unwrap();
            }
            2 => {
                if let Some(p) = pick(rng) {
                    let mut b = fs::read(&p).unwrap();
                    let n = 1 + rng.below(64 << 10) as usize;
                    let compressible = rng.chance(50);
                    b.extend(rng.bytes(n, compressible));
                    fs::write(&p, b).unwrap();
                }
            }
            3 => {
                if let Some(p) = pick(rng) {
                    let mut b = fs::read(&p).unwrap();
                    if !b.is_empty() {
                        let at = rng.below(b.len() as u64) as usize;
                        let n = (1 + rng.below(8192) as usize).min(b.len() - at);
                        let patch = rng.bytes(n, false);
                        b[at..at + n].copy_from_slice(&patch);
                        fs::write(&p, b).unwrap();
                    }
                }
            }
            4 => {
                if let Some(p) = pick(rng) {
                    let len = fs::metadata(&p).unwrap().len();
                    let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
                    f.set_len(rng.below(len + 1)).unwrap();
                }
            }
            5 => {
                if let Some(p) = pick(rng) {
                    fs::remove_file(p).unwrap();
                }
            }
            6 => {
                if let Some(p) = pick(rng) {
                    let to = dir.join(format!("r{:08x}", rng.next() as u32));
                    fs::rename(p, to).unwrap();
                }
            }
            _ => {
                if let Some(p) = pick(rng) {
                    if rng.chance(50) {
                        let mode = [0o600, 0o640, 0o644, 0o755][rng.below(4) as usize];
                        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
                    } else {
                        let link = dir.join(format!("l{:08x}", rng.next() as u32));
                        std::os::unix::fs::symlink(p.file_name().unwrap(), link).unwrap();
                    }
                }
            }
        }
    }
    // Keep it small: drop the largest files above 24 MiB in all.
    loop {
        let mut files: Vec<(u64, PathBuf)> = [dir.clone(), dir.join("sub")]
            .iter()
            .flat_map(|d| files_in(d))
            .filter_map(|p| {
                let m = fs::symlink_metadata(&p).unwrap();
                m.is_file().then_some((m.len(), p))
            })
            .collect();
        files.sort();
        if files.iter().map(|f| f.0).sum::<u64>() <= 24 << 20 {
            break;
        }
        fs::remove_file(&files.last().unwrap().1).unwrap();
    }
}

/// The ids `list --json` shows, and its stderr.
fn list(s: &Scratch) -> (BTreeSet<String>, String) {
    let out = s.cairn(&["--json", "list"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "list failed: {err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("list json");
    let ids = v
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    (ids, err)
}

/// Manifest files on disk.
fn manifests_on_disk(store: &Path) -> BTreeSet<String> {
    files_in(&store.join("snapshots"))
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect()
}

/// Restores `id` and compares it with the digest of the data path taken
/// when it was snapshotted.
fn restores_as(s: &Scratch, id: &str, want: &Digest, ctx: &str) {
    let target = s.path("restore-check");
    let _ = fs::remove_dir_all(&target);
    let out = s.cairn(&[
        "restore",
        "--snapshot",
        id,
        "--target",
        target.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{ctx}: restore of {id} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = tree_digest(&target);
    if &got != want {
        let keys: BTreeSet<_> = got.keys().chain(want.keys()).collect();
        let diff: Vec<_> = keys
            .into_iter()
            .filter(|k| got.get(*k) != want.get(*k))
            .take(5)
            .collect();
        panic!("{ctx}: snapshot {id} does not restore to the data path it was taken of; first differences: {diff:?}");
    }
    fs::remove_dir_all(&target).unwrap();
}

fn check_clean(s: &Scratch, ctx: &str) {
    let out = s.cairn(&["check", "--read-data"]);
    assert!(
        out.status.success(),
        "{ctx}: check --read-data failed ({:?}):\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn snapshot_args(s: &Scratch, data: &Path, full: bool) -> Vec<String> {
    let mut a = vec![
        "--store".to_string(),
        s.store().to_str().unwrap().to_string(),
        "--json".into(),
        "snapshot".into(),
        "--data-path".into(),
        data.to_str().unwrap().to_string(),
    ];
    if full {
        a.push("--full-read".into());
    }
    a
}

/// Runs a snapshot to the end; its id and wall time.
fn timed_snapshot(s: &Scratch, data: &Path, full: bool, ctx: &str) -> (String, Duration) {
    let start = Instant::now();
    let out = Command::new(cairn_bin())
        .args(snapshot_args(s, data, full))
        .env_remove("CAIRN_STORE")
        .env_remove("HITKEEP_DATA_PATH")
        .output()
        .unwrap();
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{ctx}: snapshot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("snapshot json");
    (v["id"].as_str().unwrap().to_string(), took)
}

/// Runs a snapshot and SIGKILLs it once `delay` has passed, unless it
/// finished first: its pid, its exit status, and how long it took if it
/// finished.
fn snapshot_killed_after(
    s: &Scratch,
    data: &Path,
    full: bool,
    delay: Duration,
) -> (u32, std::process::ExitStatus, Option<Duration>) {
    let mut child = Command::new(cairn_bin())
        .args(snapshot_args(s, data, full))
        .env_remove("CAIRN_STORE")
        .env_remove("HITKEEP_DATA_PATH")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let spawned = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return (pid, st, Some(spawned.elapsed()));
        }
        let gone = spawned.elapsed();
        if gone >= delay {
            let _ = child.kill();
            return (pid, child.wait().unwrap(), None);
        }
        std::thread::sleep((delay - gone).min(Duration::from_millis(1)));
    }
}

/// What a trial's snapshot has to do.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// `--full-read`.
    Full = 0,
    /// Incremental, after small changes under `extra/`.
    Small = 1,
    /// Incremental, after an hour of generated traffic.
    Aged = 2,
}

fn age(data: &Path, seed: u64) {
    gen(&[
        "age",
        data.to_str().unwrap(),
        "--hours",
        "1",
        "--seed",
        &seed.to_string(),
    ]);
}

#[derive(Default, Debug)]
struct Tally {
    trials: u64,
    killed_before_manifest: u64,
    killed_after_manifest: u64,
    finished_before_kill: u64,
    full_read: u64,
    aged: u64,
    temp_leftovers: u64,
    temp_files: u64,
    stale_locks_reported: u64,
    orphan_packs: u64,
    restores: u64,
}

#[test]
fn snapshot_killed_at_random_points_leaves_a_sound_store() {
    let trials = env_u64("CAIRN_CRASH_TRIALS", 12);
    let seed = env_u64("CAIRN_CRASH_SEED", 1);
    let started = Instant::now();
    eprintln!("crash: {trials} trials, seed {seed} (CAIRN_CRASH_TRIALS, CAIRN_CRASH_SEED)");
    let mut rng = Rng(seed);
    let s = Scratch::new();
    let data = s.path("data");
    let gen_seed = (seed % 1000).to_string();
    gen(&[
        "create",
        data.to_str().unwrap(),
        "--scale",
        "tiny",
        "--seed",
        &gen_seed,
    ]);
    s.ok(&["init"]);
    let store = s.store();
    // The smallest pack target the config allows (1 MiB, not 32), so runs
    // seal packs as they go and kills land between pack seals, not only
    // in the final one. Safe to change: the store is empty.
    let cfg_path = store.join("config");
    let mut cfg = StoreConfig::decode(&fs::read(&cfg_path).unwrap()).unwrap();
    cfg.pack_target = 1 << 20;
    fs::write(&cfg_path, cfg.encode().unwrap()).unwrap();
    let mut digests: BTreeMap<String, Digest> = BTreeMap::new();

    // Typical durations, measured for each kind of trial (a full read,
    // an incremental snapshot after small changes, one after an hour of
    // traffic) and kept up to date with every run that finishes.
    let mut typical = [Duration::ZERO; 3];
    let (id, first) = timed_snapshot(&s, &data, false, "calibration");
    digests.insert(id, tree_digest(&data));
    let (id, full) = timed_snapshot(&s, &data, true, "calibration");
    digests.insert(id, tree_digest(&data));
    typical[Kind::Full as usize] = first.max(full);
    mutate_extra(&data, &mut rng);
    let (id, took) = timed_snapshot(&s, &data, false, "calibration");
    digests.insert(id, tree_digest(&data));
    typical[Kind::Small as usize] = took;
    age(&data, seed.wrapping_mul(31) % 100_000);
    let (id, took) = timed_snapshot(&s, &data, false, "calibration");
    digests.insert(id, tree_digest(&data));
    typical[Kind::Aged as usize] = took;
    eprintln!("crash: typical snapshot durations (full read, small changes, aged): {typical:?}");

    let mut known = list(&s).0;
    assert_eq!(known.len(), 4);
    let mut tally = Tally::default();
    for t in 0..trials {
        // Change the data path.
        let aged = t % AGE_EVERY == AGE_EVERY - 1;
        if aged {
            age(&data, (seed.wrapping_mul(31) + t + 1) % 100_000);
            tally.aged += 1;
        } else {
            mutate_extra(&data, &mut rng);
        }
        let state = tree_digest(&data);
        let full = rng.chance(30);
        let kind = match (full, aged) {
            (true, _) => Kind::Full,
            (false, true) => Kind::Aged,
            (false, false) => Kind::Small,
        };
        let range = typical[kind as usize];
        let delay = Duration::from_micros(rng.below(range.as_micros() as u64 + 1));
        let ctx = format!(
            "trial {t} (seed {seed}, {kind:?} snapshot, kill after {} of ~{} ms)",
            delay.as_millis(),
            range.as_millis(),
        );
        let packs_before = files_in(&store.join("packs")).len();

        // Snapshot, killed.
        let (pid, status, took) = snapshot_killed_after(&s, &data, full, delay);
        if let Some(took) = took {
            // Finished first: a better measure of this kind's duration.
            typical[kind as usize] = (typical[kind as usize] + took) / 2;
        }
        let killed = status.signal() == Some(9);
        assert!(
            killed || status.success(),
            "{ctx}: snapshot failed: {status:?}"
        );

        // What it left, before any cairn looks.
        let temps = files_in(&store.join("tmp")).len() as u64;
        if temps > 0 {
            tally.temp_leftovers += 1;
            tally.temp_files += temps;
        }
        let record = fs::read_to_string(store.join("lock")).unwrap_or_default();
        let left_record = record.contains(&format!("pid: {pid}\n"));
        assert!(
            killed || record.is_empty(),
            "{ctx}: a finished snapshot left its lock record:\n{record}"
        );

        // list works and shows only complete snapshots.
        let (ids, err) = list(&s);
        if left_record {
            assert!(
                err.contains(&format!("cleared stale lock of pid {pid} on host ")),
                "{ctx}: stale lock not reported: {err:?}"
            );
            tally.stale_locks_reported += 1;
        } else {
            assert!(!err.contains("stale lock"), "{ctx}: {err}");
        }
        assert_eq!(
            files_in(&store.join("tmp")).len(),
            0,
            "{ctx}: temp files left after list"
        );
        assert_eq!(
            ids,
            manifests_on_disk(&store),
            "{ctx}: list and the manifests on disk differ"
        );
        assert!(known.is_subset(&ids), "{ctx}: a snapshot vanished");
        let new: Vec<String> = ids.difference(&known).cloned().collect();
        assert!(new.len() <= 1, "{ctx}: more than one new snapshot: {new:?}");
        match (killed, new.len()) {
            (false, 1) => tally.finished_before_kill += 1,
            (false, _) => panic!("{ctx}: a finished snapshot is not listed"),
            (true, 1) => tally.killed_after_manifest += 1,
            (true, _) => {
                tally.killed_before_manifest += 1;
                if files_in(&store.join("packs")).len() > packs_before {
                    tally.orphan_packs += 1;
                }
            }
        }
        for id in &new {
            restores_as(&s, id, &state, &ctx);
            tally.restores += 1;
            digests.insert(id.clone(), state.clone());
        }
        known = ids;

        // The store is sound.
        check_clean(&s, &ctx);

        // The next snapshot succeeds and restores.
        let (id, _) = timed_snapshot(&s, &data, false, &ctx);
        assert!(!known.contains(&id), "{ctx}: snapshot id {id} reused");
        restores_as(&s, &id, &state, &format!("{ctx}, next snapshot"));
        tally.restores += 1;
        digests.insert(id.clone(), state);
        known.insert(id);

        // And so does an older one.
        let older: Vec<&String> = digests.keys().collect();
        let pick = older[rng.below(older.len() as u64) as usize].clone();
        restores_as(&s, &pick, &digests[&pick], &format!("{ctx}, older"));
        tally.restores += 1;

        tally.trials += 1;
        tally.full_read += u64::from(full);
    }

    // Every snapshot restores to the data path it was taken of.
    let (ids, _) = list(&s);
    assert_eq!(
        ids,
        digests.keys().cloned().collect::<BTreeSet<_>>(),
        "snapshots in the store differ from those taken"
    );
    for (id, d) in &digests {
        restores_as(&s, id, d, "final pass");
        tally.restores += 1;
    }
    check_clean(&s, "final check");
    eprintln!(
        "crash: {} trials (seed {seed}) in {:.1}s: {} killed before the manifest ({} leaving unreferenced packs), {} killed after it, {} finished before the kill; {} full-read, {} after aging; temp files left in {} trials ({} files); {} stale locks reported; {} snapshots, {} verified restores",
        tally.trials,
        started.elapsed().as_secs_f64(),
        tally.killed_before_manifest,
        tally.orphan_packs,
        tally.killed_after_manifest,
        tally.finished_before_kill,
        tally.full_read,
        tally.aged,
        tally.temp_leftovers,
        tally.temp_files,
        tally.stale_locks_reported,
        digests.len(),
        tally.restores,
    );
}

/// A first snapshot killed at random points, with the default 32 MiB
/// packs. Its data pack's record is long enough to live in an entry file
/// (`cairn-index/src/entryfile.rs`), which the 1 MiB packs above never
/// reach (and a pack past 8 MiB gets early writeback). Each trial starts
/// from an empty store: after a first snapshot, later ones add too little.
/// Checked after each kill: only complete snapshots are listed (and
/// restore), `check --read-data` passes, and the next snapshot succeeds
/// and restores. `CAIRN_CRASH_FIRST_TRIALS` sets the trials (default 6).
#[test]
fn first_snapshot_killed_with_full_size_packs() {
    let trials = env_u64("CAIRN_CRASH_FIRST_TRIALS", 6);
    let seed = env_u64("CAIRN_CRASH_SEED", 1);
    let mut rng = Rng(seed ^ 0xF1F5);
    let s = Scratch::new();
    let data = s.path("data");
    // Small, not tiny: the tiny data path's new chunks fit a record of
    // under 64 KiB.
    gen(&[
        "create",
        data.to_str().unwrap(),
        "--scale",
        "small",
        "--seed",
        &(seed % 1000).to_string(),
    ]);
    let state = tree_digest(&data);
    let store = s.store();
    s.ok(&["init"]);
    let (_, first) = timed_snapshot(&s, &data, false, "calibration");
    assert!(
        !files_in(&store.join("index/entries")).is_empty(),
        "the first snapshot kept every pack record in sled: this test would not reach entry files"
    );
    let mut killed_runs = 0;
    for t in 0..trials {
        fs::remove_dir_all(&store).unwrap();
        s.ok(&["init"]);
        let delay = Duration::from_micros(rng.below(first.as_micros() as u64 + 1));
        let ctx = format!(
            "first-snapshot trial {t} (seed {seed}, kill after {} of ~{} ms)",
            delay.as_millis(),
            first.as_millis()
        );
        let (_, status, _) = snapshot_killed_after(&s, &data, false, delay);
        let killed = status.signal() == Some(9);
        assert!(
            killed || status.success(),
            "{ctx}: snapshot failed: {status:?}"
        );
        killed_runs += u64::from(killed);
        let (ids, _) = list(&s);
        assert_eq!(
            ids,
            manifests_on_disk(&store),
            "{ctx}: list and disk differ"
        );
        assert!(ids.len() <= 1, "{ctx}: {ids:?}");
        assert!(
            killed || ids.len() == 1,
            "{ctx}: a finished snapshot is not listed"
        );
        for id in &ids {
            restores_as(&s, id, &state, &ctx);
        }
        check_clean(&s, &ctx);
        let (id, _) = timed_snapshot(&s, &data, false, &ctx);
        restores_as(&s, &id, &state, &format!("{ctx}, next snapshot"));
        check_clean(&s, &format!("{ctx}, after the next snapshot"));
    }
    eprintln!(
        "crash (first snapshot, 32 MiB packs): {trials} trials, {killed_runs} killed mid-run"
    );
}
