//! Off-host stores: the object backends against a real S3 server on
//! loopback, and the `cairn` commands that read and replicate stores.

use cairn_remote::{Backend, Location, ObjectInfo, RemoteError, RetryPolicy, S3Flags};

use crate::s3_server::{S3Server, ACCESS_KEY, SECRET_KEY};

fn backend(url: &str, flags: &S3Flags) -> std::sync::Arc<dyn Backend> {
    let loc = Location::parse(url, flags, &|_| None).expect("location");
    cairn_remote::open(&loc, &quick_retry()).expect("open backend")
}

fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 2,
        initial_backoff: std::time::Duration::from_millis(50),
        max_backoff: std::time::Duration::from_millis(200),
        timeout: std::time::Duration::from_secs(5),
    }
}

fn flags(server: &S3Server, secret: &str) -> S3Flags {
    S3Flags {
        endpoint: Some(server.endpoint.clone()),
        access_key_id: Some(ACCESS_KEY.into()),
        secret_access_key: Some(secret.into()),
        ..S3Flags::default()
    }
}

/// Both backends keep the same contract: a bucket prefix and a directory.
#[test]
fn backends_put_get_ranges_list_and_delete_alike() {
    let server = S3Server::shared();
    check_backend(backend(&server.url("backend"), &flags(server, SECRET_KEY)).as_ref());
    let dir = tempfile::tempdir().unwrap();
    check_backend(&cairn_remote::LocalDir::new(&dir.path().join("store")));
}

fn check_backend(b: &dyn Backend) {
    assert!(b.list("packs").unwrap().is_empty());
    b.put("packs/ab.pack", b"hello world".to_vec()).unwrap();
    assert!(!b.put_new("packs/ab.pack", b"other".to_vec()).unwrap());
    assert!(b.put_new("snapshots/x", b"m".to_vec()).unwrap());
    assert_eq!(b.get("packs/ab.pack").unwrap(), b"hello world");
    assert_eq!(b.get_range("packs/ab.pack", 6..11).unwrap(), b"world");
    assert_eq!(b.size("packs/ab.pack").unwrap(), Some(11));
    assert_eq!(b.size("packs/none").unwrap(), None);
    assert_eq!(
        b.list("packs").unwrap(),
        vec![ObjectInfo {
            name: "ab.pack".into(),
            size: 11
        }]
    );
    let missing = b.get("snapshots/y").unwrap_err();
    assert!(matches!(missing, RemoteError::NotFound { .. }), "{missing}");
    assert!(missing.to_string().contains("snapshots/y"), "{missing}");
    b.delete("packs/ab.pack").unwrap();
    b.delete("packs/ab.pack").unwrap();
    assert!(b.list("packs").unwrap().is_empty());
}

#[test]
fn s3_backend_names_bad_credentials_missing_bucket_and_server_down() {
    let server = S3Server::shared();
    let wrong = backend(&server.url("creds"), &flags(server, "not-the-secret"));
    let e = wrong.list("packs").unwrap_err();
    assert!(matches!(e, RemoteError::Denied { .. }), "{e:?}");
    let e = wrong.put("x", b"x".to_vec()).unwrap_err();
    assert!(matches!(e, RemoteError::Denied { .. }), "{e:?}");

    let nobucket = backend("s3://no-such-bucket/p", &flags(server, SECRET_KEY));
    let e = nobucket.list("packs").unwrap_err();
    assert!(matches!(e, RemoteError::NoBucket { .. }), "{e:?}");
    assert!(e.to_string().contains("no-such-bucket"), "{e}");
    let e = nobucket.put("config", b"x".to_vec()).unwrap_err();
    assert!(matches!(e, RemoteError::NoBucket { .. }), "{e:?}");

    let down = S3Flags {
        endpoint: Some(format!(
            "http://127.0.0.1:{}",
            crate::s3_server::free_port()
        )),
        ..flags(server, SECRET_KEY)
    };
    let e = backend("s3://cairn-test/p", &down)
        .list("packs")
        .unwrap_err();
    assert!(matches!(e, RemoteError::Unreachable { .. }), "{e:?}");
    assert!(e.to_string().contains("127.0.0.1"), "{e}");
}

// ---------------------------------------------------------------------------
// `cairn` against remote stores.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use crate::common::*;

/// Runs `cairn --store STORE args...` reaching the test server, with its
/// remote-store cache in `cache`.
fn cairn_at(store: &str, args: &[&str], cache: &Path, extra: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(cairn_bin());
    cmd.arg("--store")
        .arg(store)
        .args(args)
        .env_remove("CAIRN_STORE")
        .env_remove("HITKEEP_DATA_PATH")
        .env("CAIRN_CACHE_DIR", cache)
        .env("CAIRN_S3_RETRIES", "2");
    for (k, v) in S3Server::shared().env() {
        cmd.env(k, v);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.output().expect("run cairn")
}

fn ok_at(store: &str, args: &[&str], cache: &Path) -> String {
    let out = cairn_at(store, args, cache, &[]);
    assert!(
        out.status.success(),
        "cairn --store {store} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

/// Fails with one clear line naming `needle`.
fn fails_at(store: &str, args: &[&str], cache: &Path, extra: &[(&str, String)], needle: &str) {
    let out = cairn_at(store, args, cache, extra);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "cairn {args:?} should fail: {err}");
    assert!(err.contains(needle), "error should name {needle:?}: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "one error line: {err}");
}

fn replicate_json(s: &Scratch, to: &str, extra: &[&str]) -> serde_json::Value {
    let store = s.store();
    let mut args = vec!["--json", "replicate", "--to", to];
    args.extend_from_slice(extra);
    parse_json(&ok_at(store.to_str().unwrap(), &args, &s.path("cache")))
}

fn pack_names(store: &Path) -> std::collections::BTreeSet<String> {
    fs::read_dir(store.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Restores `id` from the store at `store` into `target`.
fn restore_from(store: &str, id: &str, target: &Path, cache: &Path) {
    let target = target.to_str().unwrap();
    ok_at(
        store,
        &["restore", "--snapshot", id, "--target", target],
        cache,
    );
}

/// Starts `cairn replicate --jobs 1` from `s`'s store to `url` and waits
/// until it has sent its first pack and stopped at a gate (holding the
/// destination's lock) that is never opened.
fn paused_replication(s: &Scratch, url: &str) -> std::process::Child {
    let gate = s.path("gate");
    fs::write(&gate, b"").unwrap();
    let store = s.store();
    let child = Command::new(cairn_bin())
        .args(["--store", store.to_str().unwrap()])
        .args(["replicate", "--jobs", "1", "--to", url])
        .env(
            "CAIRN_PAUSE",
            format!("replicate-after-pack:{}", gate.display()),
        )
        .env("CAIRN_CACHE_DIR", s.path("cache"))
        .envs(S3Server::shared().env())
        .spawn()
        .expect("start replicate");
    let reached = s.path("gate.reached");
    let started = std::time::Instant::now();
    while !reached.exists() {
        assert!(
            started.elapsed().as_secs() < 120,
            "replicate never sent a pack"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}

fn remote_ids(url: &str, cache: &Path) -> Vec<String> {
    parse_json(&ok_at(url, &["--json", "list"], cache))
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

/// First replication of an ageing HitKeep data path, then an incremental
/// one after a new snapshot (only the new packs go, within 1.1x of what
/// the snapshot added locally), then a run with nothing to do. Every
/// snapshot restores byte-identically straight from the bucket (with an
/// empty cache), `check --read-data` reads the bucket clean, a directory
/// replica is a store of its own, and `snapshot` refuses the bucket.
#[test]
fn replicate_to_s3_is_incremental_and_every_snapshot_restores_from_it() {
    if !have_duckdb() {
        eprintln!("skipped: python3 with duckdb not available");
        return;
    }
    let server = S3Server::shared();
    let url = server.url("replicate");
    let s = Scratch::new();
    let data = s.path("data");
    tiny_data_path(&data);
    s.ok(&["init"]);
    small_packs(&s.store());
    let mut digests = Vec::new();
    for hour in 0..2u32 {
        if hour > 0 {
            age(&data, 1, hour);
        }
        let id = s.snapshot(&data)["id"].as_str().unwrap().to_string();
        digests.push((id, tree_digest(&data)));
    }
    let first = replicate_json(&s, &url, &["--verify"]);
    assert_eq!(first["snapshots"].as_array().unwrap().len(), 2, "{first}");
    assert_eq!(
        first["packs"].as_u64().unwrap() as usize,
        pack_names(&s.store()).len(),
        "{first}"
    );
    assert!(
        first["verified_objects"].as_u64().unwrap() >= first["packs"].as_u64().unwrap() + 3,
        "{first}"
    );
    assert_eq!(remote_ids(&url, &s.path("cache")), snapshot_ids(&s));

    // An incremental snapshot: only its packs go.
    age(&data, 1, 9);
    let before = pack_names(&s.store());
    let snap = s.snapshot(&data);
    let id = snap["id"].as_str().unwrap().to_string();
    digests.push((id.clone(), tree_digest(&data)));
    let new_packs = pack_names(&s.store()).difference(&before).count();
    let added = snap["store_growth"].as_u64().unwrap();
    let second = replicate_json(&s, &url, &[]);
    assert_eq!(second["snapshots"], serde_json::json!([id]), "{second}");
    assert_eq!(second["snapshots_already_there"], 2, "{second}");
    assert_eq!(
        second["packs"].as_u64().unwrap() as usize,
        new_packs,
        "{second}"
    );
    let sent = second["bytes_sent"].as_u64().unwrap();
    assert!(
        sent as f64 <= 1.1 * added as f64,
        "sent {sent} bytes for a snapshot that added {added}"
    );
    eprintln!("incremental replication: sent {sent} bytes, the snapshot added {added} locally");
    let third = replicate_json(&s, &url, &[]);
    assert_eq!(third["packs"], 0, "{third}");
    assert_eq!(third["bytes_sent"], 0, "{third}");

    // Straight from the bucket, with a cold cache.
    let cold = s.path("cold-cache");
    for (id, digest) in &digests {
        let target = s.path(&format!("from-s3-{id}"));
        restore_from(&url, id, &target, &cold);
        assert_eq!(
            &tree_digest(&target),
            digest,
            "snapshot {id} from the bucket"
        );
    }
    let listing = ok_at(&url, &["ls", "latest"], &cold);
    assert!(listing.contains("hitkeep.db"), "{listing}");
    let check = ok_at(&url, &["check", "--read-data"], &cold);
    assert!(check.contains("no damage found"), "{check}");
    let local = parse_json(&s.ok(&["--json", "stats"]));
    let remote = parse_json(&ok_at(&url, &["--json", "stats"], &cold));
    assert_eq!(remote["logical_bytes"], local["logical_bytes"], "{remote}");
    assert_eq!(remote["snapshots"], local["snapshots"], "{remote}");

    // A directory replica is a complete store.
    let replica = s.path("replica");
    let r = replicate_json(&s, &format!("file://{}", replica.display()), &["--verify"]);
    assert_eq!(r["snapshots"].as_array().unwrap().len(), 3, "{r}");
    let check = ok_at(replica.to_str().unwrap(), &["check", "--read-data"], &cold);
    assert!(check.contains("no damage found"), "{check}");
    let (id, digest) = digests.last().unwrap();
    let target = s.path("from-replica");
    restore_from(replica.to_str().unwrap(), id, &target, &cold);
    assert_eq!(&tree_digest(&target), digest);

    // Snapshots are taken into a local store and replicated.
    let d = data.to_str().unwrap();
    fails_at(
        &url,
        &["snapshot", "--data-path", d],
        &cold,
        &[],
        "remote store",
    );
    assert_eq!(remote_ids(&url, &cold).len(), 3);
}

/// A replication killed (SIGKILL) after its first pack shows no snapshot
/// at the destination; the next run sends only the packs that had not
/// arrived, and the snapshot then restores from the bucket.
#[test]
fn a_replication_killed_half_way_is_resumed_without_resending() {
    let server = S3Server::shared();
    let url = server.url("resume");
    let s = Scratch::new();
    let data = s.path("data");
    let mut rng = SeededRng(11);
    for i in 0..6 {
        let p = data.join(format!("assets/blob-{i}.bin"));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, rng.bytes(900 << 10)).unwrap();
    }
    s.ok(&["init"]);
    small_packs(&s.store());
    let id = s.snapshot(&data)["id"].as_str().unwrap().to_string();
    let total = pack_names(&s.store()).len();
    assert!(total >= 4, "want several packs, got {total}");

    let mut child = paused_replication(&s, &url);
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    let cold = s.path("cold");
    assert!(
        remote_ids(&url, &cold).is_empty(),
        "no snapshot before its packs"
    );

    let resumed = replicate_json(&s, &url, &[]);
    assert_eq!(resumed["packs_already_there"], 1, "{resumed}");
    assert_eq!(
        resumed["packs"].as_u64().unwrap() as usize,
        total - 1,
        "{resumed}"
    );
    assert_eq!(remote_ids(&url, &cold), vec![id.clone()]);
    let target = s.path("restored");
    restore_from(&url, &id, &target, &cold);
    assert_same_tree(&data, &target);
}

/// Wrong credentials, a missing bucket, a server that is down and a
/// destination holding another store each fail with one line naming the
/// problem, and leave the local store as it was.
#[test]
fn replicate_failures_name_credentials_bucket_server_and_store() {
    let server = S3Server::shared();
    let s = Scratch::new();
    let data = s.path("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("a.txt"), b"some data").unwrap();
    s.ok(&["init"]);
    s.snapshot(&data);
    let store = s.store();
    let store = store.to_str().unwrap();
    let cache = s.path("cache");
    let before = store_state(&s.store());
    let url = server.url("failures");
    let wrong = [("AWS_SECRET_ACCESS_KEY", "wrong-secret".to_string())];
    fails_at(
        store,
        &["replicate", "--to", &url],
        &cache,
        &wrong,
        "access denied",
    );
    fails_at(&url, &["list"], &cache, &wrong, "access denied");
    fails_at(
        store,
        &["replicate", "--to", "s3://no-such-bucket/x"],
        &cache,
        &[],
        "bucket no-such-bucket does not exist",
    );
    let down = [(
        "AWS_ENDPOINT_URL",
        format!("http://127.0.0.1:{}", crate::s3_server::free_port()),
    )];
    fails_at(
        store,
        &["replicate", "--to", &url],
        &cache,
        &down,
        "cannot reach",
    );
    fails_at(&url, &["list"], &cache, &[], "no cairn store at");

    // Another store's bucket prefix is not overwritten.
    let other = Scratch::new();
    other.ok(&["init"]);
    let o = other.store();
    ok_at(o.to_str().unwrap(), &["replicate", "--to", &url], &cache);
    fails_at(
        store,
        &["replicate", "--to", &url],
        &cache,
        &[],
        "holds another store",
    );
    assert_eq!(
        store_state(&s.store()),
        before,
        "the local store is unchanged"
    );
}

/// Sum of the pack sizes in a bucket prefix.
fn remote_pack_bytes(url: &str) -> u64 {
    backend(url, &flags(S3Server::shared(), SECRET_KEY))
        .list("packs")
        .unwrap()
        .iter()
        .map(|o| o.size)
        .sum()
}

/// Forget and prune run on the bucket itself: they take its lock (a
/// replication holding it makes them wait, and fail at once without
/// --lock-wait), a lock left by a killed process on this host is cleared,
/// the space only forgotten snapshots used is freed, and what is kept
/// restores byte-identically with a warm cache and with a cold one.
#[test]
fn forget_and_prune_on_a_bucket_free_space_under_its_lock() {
    let server = S3Server::shared();
    let url = server.url("prune");
    let s = Scratch::new();
    let data = s.path("data");
    let mut rng = SeededRng(21);
    let mut put = |name: &str| {
        let p = data.join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, rng.bytes(900 << 10)).unwrap();
    };
    put("a.bin");
    put("b.bin");
    s.ok(&["init"]);
    small_packs(&s.store());
    let mut digests = Vec::new();
    for step in 0..4 {
        match step {
            1 => put("only-in-two.bin"),
            2 => {
                fs::remove_file(data.join("only-in-two.bin")).unwrap();
                put("d.bin");
            }
            3 => put("e.bin"),
            _ => {}
        }
        let id = s.snapshot(&data)["id"].as_str().unwrap().to_string();
        digests.push((id, tree_digest(&data)));
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    replicate_json(&s, &url, &[]);
    let warm = s.path("warm");
    assert_eq!(remote_ids(&url, &warm).len(), 4);

    // A replication paused after its first pack holds the bucket's lock.
    put("f.bin");
    s.snapshot(&data);
    let mut child = paused_replication(&s, &url);
    fails_at(
        &url,
        &["forget", "--keep-last", "2"],
        &warm,
        &[],
        "in use by cairn pid",
    );
    fails_at(&url, &["prune"], &warm, &[], "in use by cairn pid");
    // Killed while holding it: the next writer on this host clears it.
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    assert!(backend(&url, &flags(server, SECRET_KEY))
        .size("lock")
        .unwrap()
        .is_some());

    let out = cairn_at(&url, &["forget", "--keep-last", "2"], &warm, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("cleared stale lock"), "{err}");
    let kept: Vec<String> = digests[2..].iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(remote_ids(&url, &warm), kept);
    assert_eq!(
        snapshot_ids(&s).len(),
        5,
        "the local store keeps its snapshots"
    );

    let before = remote_pack_bytes(&url);
    // With a cache directory prune has never seen (it reads trees
    // through the cache's metadata packs).
    let report = parse_json(&ok_at(&url, &["--json", "prune"], &s.path("fresh-cache")));
    let after = remote_pack_bytes(&url);
    assert!(
        before - after >= 850 << 10,
        "prune freed {} bytes of the bucket ({before} -> {after}): {report}",
        before - after
    );
    assert!(backend(&url, &flags(server, SECRET_KEY))
        .size("lock")
        .unwrap()
        .is_none());
    for cache in [&warm, &s.path("cold-after-prune")] {
        for (id, digest) in &digests[2..] {
            let target = cache.join(format!("restored-{id}"));
            restore_from(&url, id, &target, cache);
            assert_eq!(&tree_digest(&target), digest, "snapshot {id}");
        }
    }
    let check = ok_at(&url, &["check", "--read-data"], &warm);
    assert!(check.contains("no damage found"), "{check}");

    // `cairn unlock` removes a lock whose holder cannot be checked.
    let b = backend(&url, &flags(server, SECRET_KEY));
    b.put("lock", b"not a cairn lock".to_vec()).unwrap();
    fails_at(&url, &["prune"], &warm, &[], "in use by another process");
    let out = ok_at(&url, &["unlock"], &warm);
    assert!(out.contains("removed the lock"), "{out}");
    ok_at(&url, &["prune"], &warm);
}

/// Transient failures are retried with backoff: through a proxy that drops
/// its first connections, a replication with retries succeeds and the
/// replica restores; with retries off, the same drops make it fail with
/// one line naming the endpoint.
#[test]
fn replicate_retries_connections_that_drop() {
    let server = S3Server::shared();
    let s = Scratch::new();
    let data = s.path("data");
    let mut rng = SeededRng(31);
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("blob.bin"), rng.bytes(300 << 10)).unwrap();
    s.ok(&["init"]);
    let id = s.snapshot(&data)["id"].as_str().unwrap().to_string();
    let store = s.store();
    let store = store.to_str().unwrap();

    let strict = crate::s3_server::FlakyProxy::start(&server.endpoint, 1);
    let no_retries = [
        ("AWS_ENDPOINT_URL", strict.endpoint.clone()),
        ("CAIRN_S3_RETRIES", "0".to_string()),
    ];
    let url = server.url("retry");
    fails_at(
        store,
        &["replicate", "--to", &url],
        &s.path("c1"),
        &no_retries,
        &strict.endpoint,
    );
    assert_eq!(strict.dropped(), 1);

    let flaky = crate::s3_server::FlakyProxy::start(&server.endpoint, 3);
    let retries = [
        ("AWS_ENDPOINT_URL", flaky.endpoint.clone()),
        ("CAIRN_S3_RETRIES", "5".to_string()),
    ];
    let out = cairn_at(
        store,
        &["--json", "replicate", "--to", &url],
        &s.path("c2"),
        &retries,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        flaky.dropped(),
        3,
        "the first three connections were dropped"
    );
    let target = s.path("restored");
    restore_from(&url, &id, &target, &s.path("c3"));
    assert_same_tree(&data, &target);
}

/// Answers of 503 Slow Down in the middle of a replication: with retries
/// the replication completes and the replica restores byte-identical;
/// without, it fails in one line naming the endpoint, no snapshot of the
/// half-sent replica is visible, and a re-run completes it.
#[test]
fn replicate_survives_slow_down_answers_mid_run() {
    let server = S3Server::shared();
    let s = Scratch::new();
    let data = s.path("data");
    let mut rng = SeededRng(53);
    fs::create_dir_all(&data).unwrap();
    for i in 0..10 {
        fs::write(data.join(format!("blob{i}.bin")), rng.bytes(250 << 10)).unwrap();
    }
    s.ok(&["init"]);
    small_packs(&s.store());
    let first = s.snapshot(&data)["id"].as_str().unwrap().to_string();
    fs::write(data.join("later.bin"), rng.bytes(300 << 10)).unwrap();
    let second = s.snapshot(&data)["id"].as_str().unwrap().to_string();
    let store = s.store();
    let store = store.to_str().unwrap();
    let packs = pack_names(&s.store()).len();
    assert!(packs >= 4, "{packs} packs: want several uploads");

    // Without retries: the third pack upload is refused.
    let url = server.url("slowdown");
    let puts = std::sync::atomic::AtomicUsize::new(0);
    let proxy = crate::s3_server::FaultProxy::start(&server.endpoint, move |_, line| {
        line.starts_with("PUT")
            && line.contains("/packs/")
            && puts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 2
    });
    let no_retries = [
        ("AWS_ENDPOINT_URL", proxy.endpoint.clone()),
        ("CAIRN_S3_RETRIES", "0".to_string()),
    ];
    fails_at(
        store,
        &["replicate", "--to", &url],
        &s.path("c1"),
        &no_retries,
        &proxy.endpoint,
    );
    assert_eq!(proxy.failed().len(), 1, "{:?}", proxy.failed());
    // Snapshots become visible only once all their packs are there: none
    // is listed that cannot be restored.
    for id in remote_ids(&url, &s.path("c2")) {
        let t = s.path(&format!("partial-{id}"));
        restore_from(&url, &id, &t, &s.path("c2"));
    }

    // With retries, every fourth request of the run is answered 503.
    let flaky = crate::s3_server::FaultProxy::start(&server.endpoint, |n, _| n % 4 == 3);
    let retries = [
        ("AWS_ENDPOINT_URL", flaky.endpoint.clone()),
        ("CAIRN_S3_RETRIES", "5".to_string()),
    ];
    let out = cairn_at(store, &["replicate", "--to", &url], &s.path("c3"), &retries);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!flaky.failed().is_empty(), "the proxy answered no 503");
    assert_eq!(
        remote_ids(&url, &s.path("c4")),
        vec![first.clone(), second.clone()]
    );
    for id in [&first, &second] {
        let t = s.path(&format!("restored-{id}"));
        restore_from(&url, id, &t, &s.path("c4"));
    }
    assert_same_tree(&data, &s.path(&format!("restored-{second}")));
    let c = cairn_at(&url, &["check", "--read-data"], &s.path("c4"), &[]);
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
}

/// `prune` of a bucket killed with SIGKILL at a random point (seeded
/// delays across a measured uninterrupted run), each trial on a fresh
/// replica: the next prune clears the dead holder's lock and completes,
/// leaving nothing more to delete; `check --read-data` reads the bucket
/// clean; every kept snapshot restores byte-identically from an empty
/// cache. `CAIRN_REMOTE_PRUNE_CRASH_TRIALS` sets the trials (default 4),
/// `CAIRN_REMOTE_PRUNE_CRASH_SEED` the seed (default 1).
#[test]
fn a_bucket_prune_killed_at_random_points_keeps_every_kept_snapshot() {
    let trials = env_count("CAIRN_REMOTE_PRUNE_CRASH_TRIALS", 4);
    let seed = env_count("CAIRN_REMOTE_PRUNE_CRASH_SEED", 1);
    let server = S3Server::shared();
    let s = Scratch::new();
    let data = s.path("data");
    let mut rng = SeededRng(seed);
    fs::create_dir_all(&data).unwrap();
    s.ok(&["init"]);
    small_packs(&s.store());
    let mut digests = BTreeMap::new();
    // Files come and go, so packs end up partly used (rewritten by the
    // prune) and wholly unused (deleted).
    for step in 0..5 {
        fs::write(data.join(format!("f{step}.bin")), rng.bytes(700 << 10)).unwrap();
        if step >= 2 {
            fs::remove_file(data.join(format!("f{}.bin", step - 2))).unwrap();
        }
        let id = s.snapshot(&data)["id"].as_str().unwrap().to_string();
        digests.insert(id, tree_digest(&data));
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let kept: Vec<String> = digests.keys().skip(3).cloned().collect();
    // A fresh replica with the old snapshots forgotten, ready to prune.
    let replica = |name: &str| {
        let url = server.url(name);
        replicate_json(&s, &url, &[]);
        ok_at(
            &url,
            &["forget", "--keep-last", "2"],
            &s.path(&format!("{name}-c")),
        );
        assert_eq!(remote_ids(&url, &s.path(&format!("{name}-c"))), kept);
        url
    };
    let prune_cmd = |url: &str, cache: &Path| {
        let mut c = Command::new(cairn_bin());
        c.args(["--store", url, "prune", "--max-unused", "0"])
            .env("CAIRN_CACHE_DIR", cache)
            .envs(S3Server::shared().env())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    };
    let mut full = std::time::Duration::ZERO;
    for t in 0..2 {
        let url = replica(&format!("prune-timed-{t}"));
        let cache = s.path(&format!("prune-timed-{t}-c"));
        let start = std::time::Instant::now();
        assert!(prune_cmd(&url, &cache).status().unwrap().success());
        full = full.max(start.elapsed());
    }
    let mut killed = 0;
    for t in 0..trials {
        let name = format!("prune-crash-{t}");
        let url = replica(&name);
        let cache = s.path(&format!("{name}-c"));
        let delay =
            std::time::Duration::from_micros(rng.below(full.as_micros() as u64 * 6 / 5 + 1));
        let mut child = prune_cmd(&url, &cache).spawn().unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill();
        child.wait().unwrap();
        let context = format!("trial {t} (seed {seed}, kill after {delay:?})");
        let out = cairn_at(&url, &["prune", "--max-unused", "0"], &cache, &[]);
        assert!(
            out.status.success(),
            "{context}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let again = parse_json(&ok_at(
            &url,
            &["--json", "prune", "--dry-run", "--max-unused", "0"],
            &cache,
        ));
        assert_eq!(
            again["packs_to_delete"].as_u64(),
            Some(0),
            "{context}: {again}"
        );
        let check = cairn_at(&url, &["check", "--read-data"], &cache, &[]);
        assert!(
            check.status.success(),
            "{context}: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        for id in &kept {
            let cold = s.path(&format!("{name}-cold-{id}"));
            let target = s.path(&format!("{name}-restored-{id}"));
            restore_from(&url, id, &target, &cold);
            assert_eq!(
                tree_digest(&target),
                digests[id],
                "{context}: snapshot {id}"
            );
        }
    }
    eprintln!("bucket prune crash: {trials} trials, seed {seed}, uninterrupted prune {full:?}: {killed} killed mid-run");
}

/// Two replicas of one store (here: two bucket prefixes, one holding
/// only the first snapshot) read through one cache directory keep an
/// index each: going back to the first does not update or rebuild it.
#[test]
fn replicas_of_one_store_keep_a_cache_index_each() {
    let server = S3Server::shared();
    let s = Scratch::new();
    let data = s.path("data");
    let mut rng = SeededRng(71);
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("a.bin"), rng.bytes(400 << 10)).unwrap();
    s.ok(&["init"]);
    let first = s.snapshot(&data)["id"].as_str().unwrap().to_string();
    fs::write(data.join("b.bin"), rng.bytes(400 << 10)).unwrap();
    s.snapshot(&data);
    let (whole, partial) = (server.url("replica-whole"), server.url("replica-first"));
    replicate_json(&s, &whole, &[]);
    replicate_json(&s, &partial, &["--snapshot", &first]);
    let cache = s.path("shared-cache");
    let list = |url: &str| {
        let out = cairn_at(url, &["list"], &cache, &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(list(&whole).contains("index rebuilt"));
    assert!(list(&partial).contains("index rebuilt"));
    let again = list(&whole);
    assert!(
        !again.contains("index"),
        "the first replica's index was touched: {again}"
    );
    assert_eq!(fs::read_dir(&cache).unwrap().count(), 2);
}
