//! Property: any tree (nested directories, files of any size with random,
//! repetitive or duplicated content, empty files, DuckDB look-alikes,
//! symlinks, odd byte names, modes and mtimes) restores identically from
//! its snapshot; and after a file changes in any way (even same size with
//! its mtime put back, or replaced under the same name), both snapshots
//! still restore to their own source states.
//!
//! Cases default to 16; set `CAIRN_PROPTEST_CASES` for more.

use std::collections::BTreeMap;
use std::fs::{self, File, FileTimes};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use cairn_store::format::{ChunkId, SnapshotId};
use cairn_store::restore::{self, RestoreOptions};
use cairn_store::snapshot::{self, SnapshotOptions, SourceSpec};
use cairn_store::{NoProgress, Store};

fn cases() -> u32 {
    std::env::var("CAIRN_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16)
}

/// What a file holds.
#[derive(Clone, Debug)]
enum Content {
    /// Pseudo-random bytes; a small seed space makes duplicate files common.
    Random { seed: u8, len: usize },
    /// A short pattern repeated.
    Repeat { pattern: Vec<u8>, len: usize },
    /// `DUCK` at offset 8, at least the 12 KiB header area and a live
    /// database header whose checksum holds, so the engine takes its
    /// DuckDB path on bytes that are otherwise not a real database.
    FakeDuck { seed: u8, len: usize },
}

fn xof(seed: &[u8], len: usize) -> Vec<u8> {
    // A little xorshift keyed by the seed: no extra dependency.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for &b in seed {
        x = (x ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// `len` (≥ 12 KiB) pseudo-random bytes with `DUCK` at offset 8; with
/// `valid_header`, database header 1 is live (iteration 2 against 1),
/// declares 256 KiB blocks and carries DuckDB's checksum of itself.
fn fake_duckdb(seed: &[u8], len: usize, valid_header: bool) -> Vec<u8> {
    let mut v = xof(seed, len);
    v[8..12].copy_from_slice(b"DUCK");
    v[4096 + 8..4096 + 16].copy_from_slice(&2u64.to_le_bytes());
    v[4096 + 40..4096 + 48].copy_from_slice(&262_144u64.to_le_bytes());
    v[8192 + 8..8192 + 16].copy_from_slice(&1u64.to_le_bytes());
    let sum = cairn_chunk::duckdb::checksum(&v[4096 + 8..8192]);
    let stored = if valid_header { sum } else { !sum };
    v[4096..4096 + 8].copy_from_slice(&stored.to_le_bytes());
    v
}

impl Content {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Content::Random { seed, len } => xof(&[*seed], *len),
            Content::Repeat { pattern, len } => {
                pattern.iter().copied().cycle().take(*len).collect()
            }
            Content::FakeDuck { seed, len } => fake_duckdb(&[*seed, 0xd0], *len, true),
        }
    }
}

#[derive(Clone, Debug)]
enum Node {
    File {
        content: Content,
        mode: u32,
        mtime_ns: i64,
    },
    Symlink(Vec<u8>),
    Dir {
        entries: BTreeMap<Vec<u8>, Node>,
        mode: u32,
        mtime_ns: i64,
    },
}

fn len_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![
        2 => Just(0usize),
        3 => 1usize..64,
        3 => 64usize..20_000,
        3 => 20_000usize..300 * 1024,
    ]
}

fn content_strategy() -> impl Strategy<Value = Content> {
    prop_oneof![
        4 => (0u8..4, len_strategy()).prop_map(|(seed, len)| Content::Random { seed, len }),
        3 => (prop::collection::vec(any::<u8>(), 1..64), len_strategy())
            .prop_map(|(pattern, len)| Content::Repeat { pattern, len }),
        1 => (0u8..2, 12_288usize..300 * 1024)
            .prop_map(|(seed, len)| Content::FakeDuck { seed, len }),
    ]
}

fn name_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[a-z0-9_.-]{1,12}".prop_map(String::into_bytes),
        "[ a-zA-Z\u{e9}\u{fc}\u{2603}\u{65e5}\u{672c}\u{1f600}.-]{1,10}"
            .prop_map(String::into_bytes),
        // Raw bytes, not UTF-8 in general (no NUL, no '/').
        prop::collection::vec(1u8..=255, 1..16)
            .prop_map(|v| v.into_iter().filter(|&b| b != b'/').collect::<Vec<u8>>()),
    ]
    .prop_filter("a plain path component", |n| {
        !n.is_empty() && n != b"." && n != b".."
    })
}

fn mtime_strategy() -> impl Strategy<Value = i64> {
    // 1970 .. 2096, with nanoseconds.
    (0i64..4_000_000_000, 0i64..1_000_000_000).prop_map(|(s, ns)| s * 1_000_000_000 + ns)
}

fn file_mode() -> impl Strategy<Value = u32> {
    prop::sample::select(vec![
        0o644u32, 0o600, 0o755, 0o400, 0o444, 0o640, 0o700, 0o4755, 0o2750, 0o1644,
    ])
}

fn dir_mode() -> impl Strategy<Value = u32> {
    prop::sample::select(vec![0o755u32, 0o700, 0o750, 0o775, 0o1777, 0o2755])
}

fn node_strategy() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        5 => (content_strategy(), file_mode(), mtime_strategy())
            .prop_map(|(content, mode, mtime_ns)| Node::File { content, mode, mtime_ns }),
        1 => prop_oneof![
            "[a-z./ ]{1,20}".prop_map(String::into_bytes),
            prop::collection::vec(1u8..=255, 1..40),
        ]
        .prop_map(Node::Symlink),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        (
            prop::collection::btree_map(name_strategy(), inner, 0..6),
            dir_mode(),
            mtime_strategy(),
        )
            .prop_map(|(entries, mode, mtime_ns)| Node::Dir {
                entries,
                mode,
                mtime_ns,
            })
    })
}

fn root_strategy() -> impl Strategy<Value = BTreeMap<Vec<u8>, Node>> {
    prop::collection::btree_map(name_strategy(), node_strategy(), 0..8)
}

fn set_mtime(path: &Path, mtime_ns: i64) {
    let t = UNIX_EPOCH + Duration::from_nanos(mtime_ns as u64);
    File::open(path)
        .unwrap()
        .set_times(FileTimes::new().set_modified(t))
        .unwrap();
}

/// Writes `entries` into the existing directory `dir`.
fn build(dir: &Path, entries: &BTreeMap<Vec<u8>, Node>) {
    for (name, node) in entries {
        let p = dir.join(std::ffi::OsStr::from_bytes(name));
        match node {
            Node::File {
                content,
                mode,
                mtime_ns,
            } => {
                fs::write(&p, content.bytes()).unwrap();
                set_mtime(&p, *mtime_ns);
                fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).unwrap();
            }
            Node::Symlink(target) => {
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), &p).unwrap()
            }
            Node::Dir {
                entries,
                mode,
                mtime_ns,
            } => {
                fs::create_dir(&p).unwrap();
                build(&p, entries);
                fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).unwrap();
                set_mtime(&p, *mtime_ns);
            }
        }
    }
}

/// One entry as seen on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    File {
        mode: u32,
        mtime_ns: i64,
        size: u64,
        hash: ChunkId,
    },
    Dir {
        mode: u32,
        mtime_ns: i64,
    },
    Symlink(Vec<u8>),
}

/// Everything under `root` (not `root` itself), by relative path bytes.
fn seen(root: &Path) -> BTreeMap<Vec<u8>, Seen> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<Vec<u8>, Seen>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            let m = fs::symlink_metadata(&p).unwrap();
            let mtime_ns = m.mtime() * 1_000_000_000 + m.mtime_nsec();
            let mode = m.mode() & 0o7777;
            if m.file_type().is_symlink() {
                let t = fs::read_link(&p).unwrap().into_os_string().into_vec();
                out.insert(rel, Seen::Symlink(t));
            } else if m.is_dir() {
                out.insert(rel, Seen::Dir { mode, mtime_ns });
                walk(root, &p, out);
            } else {
                let bytes = fs::read(&p).unwrap();
                out.insert(
                    rel,
                    Seen::File {
                        mode,
                        mtime_ns,
                        size: bytes.len() as u64,
                        hash: ChunkId::of(&bytes),
                    },
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn take(store: &Store, data: &Path) -> SnapshotId {
    let opts = SnapshotOptions {
        sources: vec![SourceSpec {
            label: "data".into(),
            path: data.to_owned(),
        }],
        ..Default::default()
    };
    snapshot::snapshot(store, &opts, &NoProgress)
        .expect("snapshot")
        .manifest
        .id
}

fn restore_to(store: &Store, id: SnapshotId, target: &Path) {
    let report = restore::restore(
        store,
        &RestoreOptions {
            snapshot: id,
            target: target.to_owned(),
            overwrite: false,
            durability: restore::Durability::Synced,
        },
        &NoProgress,
    )
    .expect("restore");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
}

fn same(
    want: &BTreeMap<Vec<u8>, Seen>,
    got: &BTreeMap<Vec<u8>, Seen>,
    what: &str,
) -> Result<(), TestCaseError> {
    let wk: Vec<String> = want
        .keys()
        .map(|k| String::from_utf8_lossy(k).into())
        .collect();
    let gk: Vec<String> = got
        .keys()
        .map(|k| String::from_utf8_lossy(k).into())
        .collect();
    prop_assert_eq!(wk, gk, "{}: different paths", what);
    for (k, w) in want {
        prop_assert_eq!(
            Some(w),
            got.get(k),
            "{}: {:?} differs",
            what,
            String::from_utf8_lossy(k)
        );
    }
    Ok(())
}

/// Every regular file under `root`, by path.
fn files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        let m = fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            out.extend(files(&p));
        } else if m.is_file() {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// How the file changes between the two snapshots.
#[derive(Clone, Debug)]
enum Change {
    /// Same size, some bytes flipped, mtime put back as it was.
    SameSizeSameMtime,
    /// Bytes appended.
    Append(usize),
    /// Cut to half its size.
    Truncate,
    /// A new file (new inode) renamed over it, same size and mtime.
    ReplacedByRename,
    /// A new file next to it.
    NewFile(usize),
}

fn change_strategy() -> impl Strategy<Value = Change> {
    prop_oneof![
        Just(Change::SameSizeSameMtime),
        (1usize..100_000).prop_map(Change::Append),
        Just(Change::Truncate),
        Just(Change::ReplacedByRename),
        (0usize..100_000).prop_map(Change::NewFile),
    ]
}

fn apply(data: &Path, pick: usize, change: &Change, seed: u8) {
    let all = files(data);
    let Some(victim) = (!all.is_empty()).then(|| all[pick % all.len()].clone()) else {
        fs::write(data.join("new file"), xof(&[seed, 1], 1000)).unwrap();
        return;
    };
    let m = fs::metadata(&victim).unwrap();
    let mtime_ns = m.mtime() * 1_000_000_000 + m.mtime_nsec();
    let mode = m.mode() & 0o7777;
    // Writable whatever its mode (the tests may not run as root).
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
    match change {
        Change::SameSizeSameMtime => {
            let mut b = fs::read(&victim).unwrap();
            if b.is_empty() {
                b.push(seed);
            } else {
                let i = seed as usize % b.len();
                b[i] ^= 0x5a;
                let j = b.len() / 2;
                b[j] ^= 0xa5;
            }
            fs::write(&victim, b).unwrap();
        }
        Change::Append(n) => {
            let mut b = fs::read(&victim).unwrap();
            b.extend(xof(&[seed, 2], *n));
            fs::write(&victim, b).unwrap();
        }
        Change::Truncate => {
            let b = fs::read(&victim).unwrap();
            fs::write(&victim, &b[..b.len() / 2]).unwrap();
        }
        Change::ReplacedByRename => {
            let mut b = fs::read(&victim).unwrap();
            for x in b.iter_mut().step_by(997) {
                *x = x.wrapping_add(1);
            }
            let tmp = victim.with_file_name(".replacement");
            fs::write(&tmp, b).unwrap();
            fs::rename(&tmp, &victim).unwrap();
        }
        Change::NewFile(n) => {
            let p = victim.with_file_name("a brand new file");
            if !p.exists() {
                fs::write(&p, xof(&[seed, 3], *n)).unwrap();
            }
        }
    }
    if matches!(change, Change::SameSizeSameMtime | Change::ReplacedByRename) {
        set_mtime(&victim, mtime_ns);
    }
    fs::set_permissions(&victim, fs::Permissions::from_mode(mode)).unwrap();
}

fn round_trip(
    root: BTreeMap<Vec<u8>, Node>,
    pick: usize,
    change: Change,
    seed: u8,
) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fs::create_dir(&data).unwrap();
    build(&data, &root);
    let store_path = tmp.path().join("store");
    Store::init(&store_path).unwrap();
    let store = Store::open(&store_path).unwrap();

    let state1 = seen(&data);
    let s1 = take(&store, &data);
    let t1 = tmp.path().join("t1");
    restore_to(&store, s1, &t1);
    same(&state1, &seen(&t1), "first snapshot")?;

    apply(&data, pick, &change, seed);
    let state2 = seen(&data);
    let s2 = take(&store, &data);
    prop_assert_ne!(s1, s2);
    drop(store);
    // Reopen: what was written must be all there is.
    let store = Store::open(&store_path).unwrap();
    let t1b = tmp.path().join("t1b");
    let t2 = tmp.path().join("t2");
    restore_to(&store, s1, &t1b);
    restore_to(&store, s2, &t2);
    same(&state1, &seen(&t1b), "first snapshot, after the second")?;
    same(&state2, &seen(&t2), "second snapshot")?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    #[test]
    fn snapshots_restore_their_source_states(
        root in root_strategy(),
        pick in any::<usize>(),
        change in change_strategy(),
        seed in any::<u8>(),
    ) {
        round_trip(root, pick, change, seed)?;
    }
}

/// Fixed tree with every kind of entry, so the property's ground is
/// covered even on an unlucky run.
#[test]
fn fixed_tree_with_every_kind_round_trips() {
    let mut sub = BTreeMap::new();
    sub.insert(
        "r\u{e9}sum\u{e9} 1.txt".as_bytes().to_vec(),
        Node::File {
            content: Content::Random {
                seed: 1,
                len: 200_000,
            },
            mode: 0o640,
            mtime_ns: 1_234_567_890_123_456_789,
        },
    );
    sub.insert(
        vec![0xff, 0xfe, b' '],
        Node::File {
            content: Content::Repeat {
                pattern: b"ab".to_vec(),
                len: 70_000,
            },
            mode: 0o4755,
            mtime_ns: 5,
        },
    );
    let mut root = BTreeMap::new();
    root.insert(
        b"dir".to_vec(),
        Node::Dir {
            entries: sub,
            mode: 0o750,
            mtime_ns: 1_600_000_000_000_000_001,
        },
    );
    root.insert(
        b"empty".to_vec(),
        Node::File {
            content: Content::Random { seed: 0, len: 0 },
            mode: 0o600,
            mtime_ns: 0,
        },
    );
    root.insert(
        b"duck.db".to_vec(),
        Node::File {
            content: Content::FakeDuck {
                seed: 0,
                len: 12_288 + 262_144 + 5,
            },
            mode: 0o644,
            mtime_ns: 1_700_000_000_000_000_000,
        },
    );
    root.insert(
        b"copy".to_vec(),
        Node::File {
            content: Content::Random {
                seed: 1,
                len: 200_000,
            },
            mode: 0o644,
            mtime_ns: 1,
        },
    );
    root.insert(b"link".to_vec(), Node::Symlink(b"dir/../empty".to_vec()));
    root.insert(
        b"dangling".to_vec(),
        Node::Symlink(b"/nonexistent/\xff".to_vec()),
    );
    round_trip(root, 0, Change::SameSizeSameMtime, 7).unwrap();
}

/// A file dated before 1970 keeps its mtime (stat gives it, the walk
/// records it as negative nanoseconds).
#[test]
fn pre_epoch_mtime_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fs::create_dir(&data).unwrap();
    let f = data.join("old.txt");
    fs::write(&f, b"from 1969").unwrap();
    let t = UNIX_EPOCH - Duration::from_secs(86_400 * 100) + Duration::from_nanos(250);
    File::open(&f)
        .unwrap()
        .set_times(FileTimes::new().set_modified(t))
        .unwrap();
    let before = seen(&data);
    let store_path = tmp.path().join("store");
    Store::init(&store_path).unwrap();
    let store = Store::open(&store_path).unwrap();
    let id = take(&store, &data);
    let target = tmp.path().join("t");
    restore_to(&store, id, &target);
    same(&before, &seen(&target), "pre-1970 file").unwrap();
}

/// A stable file that merely looks like DuckDB (`DUCK` at offset 8) but
/// whose live header checksum does not hold — a damaged database, or any
/// binary with those bytes — is still a file: it must be in the snapshot.
#[test]
fn stable_file_with_duckdb_magic_and_bad_header_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fs::create_dir(&data).unwrap();
    fs::write(
        data.join("damaged.db"),
        fake_duckdb(b"damaged", 300_000, false),
    )
    .unwrap();
    fs::write(data.join("fine.txt"), b"fine").unwrap();
    let before = seen(&data);
    let store_path = tmp.path().join("store");
    Store::init(&store_path).unwrap();
    let store = Store::open(&store_path).unwrap();
    let id = take(&store, &data);
    let target = tmp.path().join("t");
    restore_to(&store, id, &target);
    same(&before, &seen(&target), "damaged DuckDB file").unwrap();
}

/// Counts restored files and, each time one is reported done, checks it
/// is in place: at least as many files under their real names as reported.
struct PlacedFiles {
    target: PathBuf,
    done: std::sync::atomic::AtomicUsize,
    early: std::sync::atomic::AtomicUsize,
}

impl cairn_store::Progress for PlacedFiles {
    fn file_done(&self) {
        use std::sync::atomic::Ordering;
        let done = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        let placed = files_in(&self.target)
            .iter()
            .filter(|p| !p.to_string_lossy().contains(".cairn-restore"))
            .count();
        if placed < done {
            self.early.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Every regular file under `dir`.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => out.extend(files_in(&e.path())),
            Ok(t) if t.is_file() => out.push(e.path()),
            _ => {}
        }
    }
    out
}

/// A restore reports a file done only once it is in place under its own
/// name (after its fsync, when durable), and every file exactly once.
#[test]
fn restore_reports_a_file_done_once_it_is_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fs::create_dir_all(data.join("sub")).unwrap();
    for i in 0..40u8 {
        let dir = if i % 2 == 0 {
            data.clone()
        } else {
            data.join("sub")
        };
        fs::write(
            dir.join(format!("f{i}")),
            xof(&[i], 1000 + usize::from(i) * 3000),
        )
        .unwrap();
    }
    let store_path = tmp.path().join("store");
    Store::init(&store_path).unwrap();
    let store = Store::open(&store_path).unwrap();
    let id = take(&store, &data);
    for (n, durability) in [restore::Durability::Synced, restore::Durability::Unsynced]
        .into_iter()
        .enumerate()
    {
        let progress = PlacedFiles {
            target: tmp.path().join(format!("t{n}")),
            done: Default::default(),
            early: Default::default(),
        };
        let report = restore::restore(
            &store,
            &RestoreOptions {
                snapshot: id,
                target: progress.target.clone(),
                overwrite: false,
                durability,
            },
            &progress,
        )
        .expect("restore");
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        assert_eq!(progress.done.into_inner(), 40, "{durability:?}");
        assert_eq!(progress.early.into_inner(), 0, "{durability:?}");
    }
}
