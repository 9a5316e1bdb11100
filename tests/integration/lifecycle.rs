//! Lifecycle: `forget`, `prune` (with snapshots running meanwhile, and
//! killed with SIGKILL at random points).
//!
//! Trial counts: `CAIRN_PRUNE_CRASH_TRIALS` (default 20) and
//! `CAIRN_PRUNE_LOOP_ROUNDS` (default 3); `CAIRN_PRUNE_CRASH_SEED` sets
//! the crash test's seed (default 1).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

type Digest = BTreeMap<PathBuf, (String, u32, Vec<u8>, i64)>;

/// Takes a snapshot of `data`; its id.
fn snapshot_id(s: &Scratch, data: &Path) -> String {
    s.snapshot(data)["id"].as_str().unwrap().to_string()
}

/// Writes `n` bytes of seeded random content to `path`.
fn random_file(path: &Path, rng: &mut SeededRng, n: usize) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, rng.bytes(n)).unwrap();
}

/// Six snapshots of an ageing data path (one holding a large file only it
/// has), forget all but the last two, prune: the kept snapshots restore
/// byte for byte, `check --read-data` is clean, and the packs shrink by at
/// least 90 % of what only the forgotten snapshots needed. That amount is
/// measured independently of prune's own accounting: the kept snapshots
/// are restored and snapshotted into a fresh store, whose packs are what
/// they need.
#[test]
fn forget_and_prune_free_what_only_forgotten_snapshots_used() {
    if !have_duckdb() {
        eprintln!("skipped: python3 with duckdb not available");
        return;
    }
    let s = Scratch::new();
    let data = s.path("data");
    tiny_data_path(&data);
    s.ok(&["init"]);
    let mut rng = SeededRng(5);
    let mut digests = BTreeMap::new();
    for round in 0..6u32 {
        if round > 0 {
            age(&data, 2, round);
        }
        if round == 2 {
            random_file(&data.join("imports/big/upload.bin"), &mut rng, 3 << 20);
        }
        if round == 3 {
            fs::remove_dir_all(data.join("imports/big")).unwrap();
        }
        let id = snapshot_id(&s, &data);
        digests.insert(id, tree_digest(&data));
    }
    let plan = parse_json(&s.ok(&["--json", "forget", "--keep-last", "2", "--dry-run"]));
    assert_eq!(plan["keep"].as_array().unwrap().len(), 2, "{plan}");
    assert_eq!(plan["remove"].as_array().unwrap().len(), 4, "{plan}");
    assert_eq!(snapshot_ids(&s).len(), 6, "a dry run changed nothing");
    let zero = s.fails(&["forget", "--keep-last", "0"]);
    assert!(zero.contains("--keep-last"), "{zero}");
    s.ok(&["forget", "--keep-last", "2"]);
    let kept = snapshot_ids(&s);
    assert_eq!(kept, digests.keys().skip(4).cloned().collect::<Vec<_>>());

    // What the kept snapshots need, stored on their own.
    let needed = {
        let fresh = Scratch::new();
        fresh.ok(&["init"]);
        for id in &kept {
            let dir = fresh.path(&format!("r-{id}"));
            restore_to(&s, id, &dir);
            fresh.snapshot(&dir);
        }
        pack_bytes(&fresh.store())
    };
    let before = pack_bytes(&s.store());
    let dry = parse_json(&s.ok(&["--json", "prune", "--dry-run"]));
    assert_eq!(
        pack_bytes(&s.store()),
        before,
        "a dry run deleted something"
    );
    assert!(dry["expected_freed"].as_u64().unwrap() > 0, "{dry}");
    let done = parse_json(&s.ok(&["--json", "prune"]));
    let after = pack_bytes(&s.store());
    let only_forgotten = before.saturating_sub(needed);
    eprintln!(
        "packs before {before}, after {after}, kept snapshots alone {needed}: freed {} of {only_forgotten} only the forgotten ones used",
        before - after
    );
    assert!(
        only_forgotten > 3 << 20,
        "the forgotten snapshots held the large file"
    );
    assert!(
        (before - after) as f64 >= 0.9 * only_forgotten as f64,
        "freed {} of {only_forgotten}: {done}",
        before - after
    );
    assert_eq!(done["freed"].as_u64(), Some(before - after), "{done}");
    for id in &kept {
        let dir = s.path(&format!("after-{id}"));
        restore_to(&s, id, &dir);
        assert_eq!(tree_digest(&dir), digests[id], "snapshot {id} after prune");
    }
    s.ok(&["check", "--read-data"]);
    // A second prune finds nothing to do.
    let again = parse_json(&s.ok(&["--json", "prune"]));
    assert_eq!(again["packs_to_delete"].as_u64(), Some(0), "{again}");
    assert_eq!(again["packs_to_rewrite"].as_u64(), Some(0), "{again}");
}

/// Starts `cairn prune` paused between copying and sweeping (the test
/// gate `CAIRN_PAUSE`); returns the child once it is waiting there.
fn paused_prune(s: &Scratch, gate: &Path, args: &[&str]) -> std::process::Child {
    fs::write(gate, b"").unwrap();
    let reached = PathBuf::from(format!("{}.reached", gate.display()));
    let child = Command::new(cairn_bin())
        .arg("--store")
        .arg(s.store())
        .args(["--json", "prune"])
        .args(args)
        .env(
            "CAIRN_PAUSE",
            format!("prune-before-sweep:{}", gate.display()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(120);
    while !reached.exists() {
        assert!(Instant::now() < until, "prune never reached its sweep");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// The race prune must win: a chunk is dead when prune plans, a snapshot
/// taken before the sweep deduplicates against it, and the sweep must then
/// keep its pack.
#[test]
fn a_snapshot_taken_during_prune_keeps_what_it_deduplicated_against() {
    let s = Scratch::new();
    let data = s.path("data");
    let mut rng = SeededRng(11);
    random_file(&data.join("a/keep.bin"), &mut rng, 200_000);
    random_file(&data.join("b/gone.bin"), &mut rng, 2 << 20);
    let gone = fs::read(data.join("b/gone.bin")).unwrap();
    s.ok(&["init"]);
    snapshot_id(&s, &data);
    fs::remove_dir_all(data.join("b")).unwrap();
    snapshot_id(&s, &data);
    s.ok(&["forget", "--keep-last", "1"]);

    let gate = s.path("gate");
    let child = paused_prune(&s, &gate, &["--max-unused", "0"]);
    // Prune has planned (gone.bin is dead) and holds no store lock: the
    // file comes back and a snapshot deduplicates against its chunks.
    fs::create_dir_all(data.join("b")).unwrap();
    fs::write(data.join("b/gone.bin"), &gone).unwrap();
    let late = s.snapshot(&data);
    assert!(
        late["new_data_bytes"].as_u64().unwrap() < 100_000,
        "the returning file was deduplicated: {late}"
    );
    fs::remove_file(&gate).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prune: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = parse_json(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(
        report["late_snapshots"],
        serde_json::json!([late["id"]]),
        "{report}"
    );
    assert!(
        !report["packs_spared"].as_array().unwrap().is_empty(),
        "{report}"
    );
    let dir = s.path("restored");
    restore_to(&s, late["id"].as_str().unwrap(), &dir);
    assert_same_tree(&data, &dir);
    s.ok(&["check", "--read-data"]);
}

/// Snapshots in a loop (changing files between them) while another thread
/// forgets and prunes: every snapshot still in the store restores to what
/// was captured, and the store checks clean.
#[test]
fn snapshots_keep_running_while_prune_runs() {
    let rounds = env_count("CAIRN_PRUNE_LOOP_ROUNDS", 3);
    let s = Scratch::new();
    let data = s.path("data");
    let mut rng = SeededRng(21);
    for i in 0..8 {
        random_file(
            &data.join(format!("d{}/f{i}.bin", i % 3)),
            &mut rng,
            300_000,
        );
    }
    s.ok(&["init"]);
    small_packs(&s.store());
    let stop = std::sync::atomic::AtomicBool::new(false);
    let digests: BTreeMap<String, Digest> = std::thread::scope(|scope| {
        let snapshots = scope.spawn(|| {
            let mut digests = BTreeMap::new();
            let mut rng = SeededRng(22);
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || i < 4 {
                // Replace one file, add one, remove one.
                let dir = data.join(format!("d{}", i % 3));
                random_file(
                    &dir.join(format!("f{i}.bin")),
                    &mut rng,
                    150_000 + (i as usize % 5) * 50_000,
                );
                let old = fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
                if i.is_multiple_of(2) {
                    fs::remove_file(old).unwrap();
                }
                let out = s.ok(&[
                    "--json",
                    "--lock-wait",
                    "300",
                    "snapshot",
                    "--data-path",
                    data.to_str().unwrap(),
                ]);
                let id = parse_json(&out)["id"].as_str().unwrap().to_string();
                digests.insert(id, tree_digest(&data));
                i += 1;
            }
            digests
        });
        for _ in 0..rounds {
            std::thread::sleep(Duration::from_millis(300));
            s.ok(&["--lock-wait", "300", "forget", "--keep-last", "3"]);
            s.ok(&["--lock-wait", "300", "prune", "--max-unused", "0"]);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        snapshots.join().unwrap()
    });
    s.ok(&["prune", "--max-unused", "0"]);
    let left = snapshot_ids(&s);
    assert!(left.len() >= 3, "{left:?}");
    for id in &left {
        let dir = s.path(&format!("r-{id}"));
        restore_to(&s, id, &dir);
        assert_eq!(tree_digest(&dir), digests[id], "snapshot {id}");
    }
    s.ok(&["check", "--read-data"]);
}

/// `prune` killed with SIGKILL at a random point (seeded delays across a
/// measured uninterrupted run): every kept snapshot restores byte for
/// byte, `check --read-data` is clean, and a later prune completes.
#[test]
fn prune_killed_at_random_points_keeps_every_kept_snapshot() {
    if !have_duckdb() {
        eprintln!("skipped: python3 with duckdb not available");
        return;
    }
    let trials = env_count("CAIRN_PRUNE_CRASH_TRIALS", 20);
    let seed = env_count("CAIRN_PRUNE_CRASH_SEED", 1);
    let base = Scratch::new();
    let data = base.path("data");
    tiny_data_path(&data);
    base.ok(&["init"]);
    small_packs(&base.store());
    let mut rng = SeededRng(seed);
    for round in 0..5u32 {
        if round > 0 {
            age(&data, 3, round);
        }
        random_file(
            &data.join(format!("imports/s/r{round}.bin")),
            &mut rng,
            1 << 20,
        );
        snapshot_id(&base, &data);
    }
    base.ok(&["forget", "--keep-last", "2"]);
    let kept = snapshot_ids(&base);
    let expected: BTreeMap<String, Digest> = kept
        .iter()
        .map(|id| {
            let dir = base.path(&format!("expected-{id}"));
            restore_to(&base, id, &dir);
            (id.clone(), tree_digest(&dir))
        })
        .collect();
    let trial_store = |t: u64| {
        let s = Scratch::new();
        copy_tree(&base.store(), &s.store());
        let _ = t;
        s
    };
    // An uninterrupted prune, timed (twice; the longer counts).
    let mut full = Duration::ZERO;
    for t in 0..2 {
        let s = trial_store(t);
        let start = Instant::now();
        s.ok(&["prune", "--max-unused", "0"]);
        full = full.max(start.elapsed());
    }
    let mut outcomes = [0u32; 2]; // [killed, finished before the kill]
    for t in 0..trials {
        let s = trial_store(t);
        let delay = Duration::from_micros(rng.below(full.as_micros() as u64 * 6 / 5 + 1));
        let mut child = Command::new(cairn_bin())
            .arg("--store")
            .arg(s.store())
            .args(["prune", "--max-unused", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap().is_some();
        let _ = child.kill();
        child.wait().unwrap();
        outcomes[usize::from(finished)] += 1;
        let context = format!("trial {t} (seed {seed}, kill after {delay:?})");
        let check = s.cairn(&["check", "--read-data"]);
        assert!(
            check.status.success(),
            "{context}: check failed: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let id = &kept[rng.below(kept.len() as u64) as usize];
        let dir = s.path("restored");
        restore_to(&s, id, &dir);
        assert_eq!(tree_digest(&dir), expected[id], "{context}: snapshot {id}");
        fs::remove_dir_all(&dir).unwrap();
        if t.is_multiple_of(5) {
            // The interrupted prune can be finished, and leaves no dead pack.
            s.ok(&["prune", "--max-unused", "0"]);
            let again = parse_json(&s.ok(&["--json", "prune", "--dry-run", "--max-unused", "0"]));
            assert_eq!(
                again["packs_to_delete"].as_u64(),
                Some(0),
                "{context}: {again}"
            );
            for id in &kept {
                let dir = s.path(&format!("final-{id}"));
                restore_to(&s, id, &dir);
                assert_eq!(
                    tree_digest(&dir),
                    expected[id],
                    "{context}: snapshot {id} after a full prune"
                );
            }
        }
    }
    eprintln!(
        "prune crash: {trials} trials, seed {seed}, uninterrupted prune {full:?}: {} killed mid-run, {} finished first",
        outcomes[0], outcomes[1]
    );
}

/// Every chunk of every pack, decompressed, concatenated with the raw pack
/// bytes (so a marker is found whether its frame is compressed or not).
fn unpacked_store(store: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for e in fs::read_dir(store.join("packs")).unwrap() {
        let bytes = fs::read(e.unwrap().path()).unwrap();
        let trailer = cairn_format::pack::parse_pack(&bytes).unwrap();
        let mut last = None;
        for entry in &trailer.entries {
            if last == Some(entry.frame_offset) {
                continue;
            }
            last = Some(entry.frame_offset);
            let start = entry.frame_offset as usize;
            let frame = &bytes[start..start + entry.frame_len as usize];
            all.extend_from_slice(&cairn_format::pack::decode_frame(frame).unwrap());
        }
        all.extend_from_slice(&bytes);
    }
    all
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `purge-tenant`: a tenant whose database (and one of its sites' assets)
/// carries a unique marker is removed from every snapshot. Afterwards no
/// pack, decompressed, holds the marker; every snapshot restores to what
/// it was minus that tenant's files; no snapshot lists a path of it; the
/// report says it verified this; and the store checks clean.
#[test]
fn purge_tenant_leaves_no_trace_of_the_tenant_in_any_pack() {
    if !have_duckdb() {
        eprintln!("skipped: python3 with duckdb not available");
        return;
    }
    let s = Scratch::new();
    let data = s.path("data");
    tiny_data_path(&data);
    // The tenant with archives of its own (so its sites are known).
    let tenant = fs::read_dir(data.join("archive/tenants"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name()
        .into_string()
        .unwrap();
    let sites: Vec<String> = fs::read_dir(data.join(format!("archive/tenants/{tenant}/sites")))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let site = sites[0].clone();
    let marker = b"CAIRN-GDPR-MARKER-7f3a9c1e-only-in-this-tenant";
    let db = data.join(format!("tenants/{tenant}/hitkeep.db"));
    let py = format!(
        "import duckdb\nc = duckdb.connect({db:?})\nc.execute(\"PRAGMA force_compression='uncompressed'\")\nc.execute(\"CREATE TABLE gdpr_marker AS SELECT '{}' || range AS m FROM range(50)\")\nc.execute('CHECKPOINT')\nc.close()\n",
        std::str::from_utf8(marker).unwrap(),
        db = db.to_str().unwrap()
    );
    let st = Command::new("python3").arg("-c").arg(&py).status().unwrap();
    assert!(st.success());
    assert!(
        contains(&fs::read(&db).unwrap(), marker),
        "marker in the db file"
    );
    let asset = data.join(format!("assets/qr-codes/{site}/q/marker.png"));
    fs::create_dir_all(asset.parent().unwrap()).unwrap();
    let mut asset_bytes = SeededRng(3).bytes(9000);
    asset_bytes.extend_from_slice(marker);
    fs::write(&asset, &asset_bytes).unwrap();

    s.ok(&["init"]);
    // Two snapshots that are forgotten (not pruned) before the purge. The
    // second adds a small file of the tenant with a second marker, packed
    // with 3 MB of other data that stays: its pack ends up less than 1 %
    // dead and holds no chunk of the remaining snapshots' tenant files, so
    // only a purge that sweeps every dead chunk removes that marker.
    snapshot_id(&s, &data);
    let old_marker = b"CAIRN-GDPR-MARKER-in-a-forgotten-snapshot-only";
    let export = data.join(format!("tenants/{tenant}/export.csv"));
    let mut rng = SeededRng(4);
    let mut export_bytes = rng.bytes(20_000);
    export_bytes.extend_from_slice(old_marker);
    fs::write(&export, &export_bytes).unwrap();
    random_file(&data.join("imports/kept/big.bin"), &mut rng, 3 << 20);
    snapshot_id(&s, &data);
    fs::remove_file(&export).unwrap();
    let mut digests = BTreeMap::new();
    for round in 0..3u32 {
        if round > 0 {
            age(&data, 2, round);
        }
        let id = snapshot_id(&s, &data);
        digests.insert(id, tree_digest(&data));
    }
    s.ok(&["forget", "--keep-last", "3"]);
    let before = unpacked_store(&s.store());
    assert!(
        contains(&before, marker),
        "the marker is in the packs before"
    );
    assert!(
        contains(&before, old_marker),
        "the forgotten snapshot's marker is in the packs before"
    );

    let dry = parse_json(&s.ok(&["--json", "purge-tenant", &tenant, "--dry-run"]));
    assert_eq!(dry["snapshots"].as_array().unwrap().len(), 3, "{dry}");
    assert!(
        dry["sites"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(site)),
        "{dry}"
    );
    assert!(
        contains(&unpacked_store(&s.store()), marker),
        "a dry run changed nothing"
    );

    let out = parse_json(&s.ok(&["--json", "purge-tenant", &tenant]));
    assert_eq!(out["verified"], serde_json::json!(true), "{out}");
    assert_eq!(out["snapshots"].as_array().unwrap().len(), 3, "{out}");
    assert!(out["bytes_removed"].as_u64().unwrap() > 0, "{out}");
    let report = fs::read_to_string(out["report"].as_str().unwrap()).unwrap();
    assert!(report.contains("verified: read the trailers"), "{report}");
    assert!(
        report.contains(&format!("tenants/{tenant}/hitkeep.db")),
        "{report}"
    );

    let after = unpacked_store(&s.store());
    assert!(
        !contains(&after, marker),
        "the marker is gone from every pack"
    );
    assert!(
        !contains(&after, old_marker),
        "the forgotten snapshot's marker is gone too"
    );
    let owned = |p: &Path| {
        p.components().any(|c| {
            let c = c.as_os_str().to_str().unwrap();
            c == tenant || sites.iter().any(|s| s == c)
        })
    };
    let new_ids = snapshot_ids(&s);
    assert_eq!(new_ids.len(), 3);
    for (old_id, new_id) in digests.keys().zip(&new_ids) {
        assert_ne!(old_id, new_id, "a rewritten snapshot has a new id");
        let listing = s.ok(&["ls", new_id]);
        assert!(
            !listing.contains(&tenant),
            "snapshot {new_id} lists the tenant"
        );
        let dir = s.path(&format!("r-{new_id}"));
        restore_to(&s, new_id, &dir);
        let restored = tree_digest(&dir);
        let expected: Digest = digests[old_id]
            .iter()
            .filter(|(p, v)| v.0 == "file" && !owned(p))
            .map(|(p, v)| (p.clone(), v.clone()))
            .collect();
        let restored_files: Digest = restored
            .into_iter()
            .filter(|(_, v)| v.0 == "file")
            .collect();
        assert_eq!(restored_files, expected, "snapshot {new_id} (was {old_id})");
    }
    s.ok(&["check", "--read-data"]);
    // Purging again rewrites nothing and proves the same.
    let again = parse_json(&s.ok(&["--json", "purge-tenant", &tenant]));
    assert_eq!(again["snapshots"], serde_json::json!([]), "{again}");
    assert_eq!(again["verified"], serde_json::json!(true), "{again}");
}
