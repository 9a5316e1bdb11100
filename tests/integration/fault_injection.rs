//! Fault injection: damage a store on purpose (a flipped bit in a pack, a
//! truncated or deleted pack, a deleted or garbled index, a garbled
//! manifest) and check that
//! - `cairn check --read-data` exits 1 and names the damaged pack and/or
//!   the damaged snapshots and files (or, for the index, which is only a
//!   cache, that cairn rebuilds it or says clearly what to do);
//! - `cairn restore` never writes a wrong file: the files check names are
//!   refused by name with a non-zero exit, and every other file restores
//!   byte-identically.
//!
//! Each case runs `CAIRN_FAULT_TRIALS` seeds (default 6) on copies of one
//! store with three snapshots of a generated tiny data path.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use cairn_format::{pack, ChunkId, ListNode, Manifest, TreeNode};

use crate::common::*;

/// A small seeded RNG (xorshift64*), so every trial can be replayed.
struct Rng(u64);

impl Rng {
    fn new(case: u64, trial: u64) -> Self {
        // splitmix64 of the seed, never zero.
        let mut z = (case << 32 | trial).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0);
        self.next() % n
    }

    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

fn trials() -> u64 {
    std::env::var("CAIRN_FAULT_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
}

/// The pristine store every trial copies, and each snapshot restored
/// from it (the reference a damaged store's restore is compared with).
struct Base {
    scratch: Scratch,
    /// (snapshot id, its clean restore).
    snapshots: Vec<(String, PathBuf)>,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let s = Scratch::new();
        let data = s.path("data");
        let d = data.to_str().unwrap();
        gen(&["create", d, "--scale", "tiny", "--seed", "7"]);
        s.ok(&["init"]);
        let mut ids = Vec::new();
        for hour in 0..3 {
            if hour > 0 {
                gen(&[
                    "age",
                    d,
                    "--hours",
                    "1",
                    "--seed",
                    &format!("{}", 20 + hour),
                ]);
            }
            ids.push(s.snapshot(&data)["id"].as_str().unwrap().to_string());
        }
        let clean = s.cairn(&["--json", "check", "--read-data"]);
        assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
        let mut snapshots = Vec::new();
        for id in ids {
            let target = s.path(&format!("ref-{id}"));
            s.ok(&[
                "restore",
                "--snapshot",
                &id,
                "--target",
                target.to_str().unwrap(),
            ]);
            snapshots.push((id, target));
        }
        Base {
            scratch: s,
            snapshots,
        }
    })
}

/// A fresh copy of the base store.
fn copy_of_base() -> Scratch {
    let t = Scratch::new();
    copy_tree(&base().scratch.store(), &t.store());
    t
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn no_panic(o: &Output, what: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{what}: panic\n{}",
        text(o)
    );
}

fn packs(store: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(store.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pack"))
        .collect();
    v.sort();
    v
}

fn pack_hex(p: &Path) -> String {
    p.file_stem().unwrap().to_str().unwrap().to_string()
}

/// What `check --read-data` said, from its JSON (and its text run).
struct CheckResult {
    code: Option<i32>,
    json: serde_json::Value,
    text: String,
}

impl CheckResult {
    fn damaged_packs(&self) -> BTreeSet<String> {
        self.json["damaged_packs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["pack"].as_str().unwrap().to_string())
            .collect()
    }

    /// Snapshot id -> (manifest error, damaged path -> error).
    fn damaged_snapshots(&self) -> BTreeMap<String, (Option<String>, BTreeMap<String, String>)> {
        let mut out = BTreeMap::new();
        for s in self.json["damaged_snapshots"].as_array().unwrap() {
            let files = s["details"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    (
                        d["path"].as_str().unwrap().to_string(),
                        d["error"].as_str().unwrap().to_string(),
                    )
                })
                .collect::<BTreeMap<_, _>>();
            let names: Vec<&str> = s["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap())
                .collect();
            assert_eq!(names.len(), files.len());
            let manifest_error = if files.is_empty() {
                Some(
                    s["error"]
                        .as_str()
                        .expect("error of a damaged snapshot")
                        .to_string(),
                )
            } else {
                None
            };
            out.insert(
                s["id"].as_str().unwrap().to_string(),
                (manifest_error, files),
            );
        }
        out
    }
}

/// Runs `check --read-data` as JSON and as text; they must agree.
fn run_check(t: &Scratch, what: &str) -> CheckResult {
    let o = t.cairn(&["--json", "check", "--read-data"]);
    no_panic(&o, what);
    let json: serde_json::Value = match o.status.code() {
        Some(0) | Some(1) => serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{what}: check --json: {e}\n{}", text(&o))),
        _ => serde_json::Value::Null,
    };
    let to = t.cairn(&["check", "--read-data"]);
    no_panic(&to, what);
    assert_eq!(
        to.status.code(),
        o.status.code(),
        "{what}: text vs json exit"
    );
    let r = CheckResult {
        code: o.status.code(),
        json,
        text: format!(
            "{}{}",
            String::from_utf8_lossy(&to.stdout),
            String::from_utf8_lossy(&to.stderr)
        ),
    };
    if r.code == Some(1) {
        // The text report names the same packs, snapshots and paths.
        for p in r.damaged_packs() {
            assert!(
                r.text.contains(&p),
                "{what}: text lacks pack {p}\n{}",
                r.text
            );
        }
        for (id, (_, files)) in r.damaged_snapshots() {
            assert!(r.text.contains(&id), "{what}: text lacks {id}\n{}", r.text);
            for f in files.keys() {
                assert!(
                    r.text.contains(f.as_str()),
                    "{what}: text lacks {f}\n{}",
                    r.text
                );
            }
        }
    }
    r
}

/// How restores of a damaged store went, over all trials of a case.
#[derive(Default, Debug)]
struct Tally {
    trials: u64,
    /// Files check named that restore refused by name.
    refused: u64,
    /// Files check named (their pack's trailer is unreadable) that restore
    /// could still read through the index, and restored intact.
    intact_via_index: u64,
    /// Snapshots restore refused whole because a directory node is damaged.
    whole_snapshot_refused: u64,
    /// Snapshots restored fully and identically.
    clean_restores: u64,
}

/// Restores every snapshot of the damaged store `t` and holds each
/// restore to what `check` said: no file is ever wrong; undamaged
/// snapshots restore identically; in damaged ones exactly the named files
/// are refused, by name, with a non-zero exit.
fn restore_all(t: &Scratch, check: &CheckResult, what: &str, tally: &mut Tally) {
    let damaged = check.damaged_snapshots();
    for (id, reference) in &base().snapshots {
        let target = t.path(&format!("restore-{id}"));
        let o = t.cairn(&[
            "restore",
            "--snapshot",
            id,
            "--target",
            target.to_str().unwrap(),
        ]);
        let what = format!("{what}: restore {id}");
        no_panic(&o, &what);
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        let Some((manifest_error, files)) = damaged.get(id) else {
            assert!(
                o.status.success(),
                "{what}: check found no damage\n{}",
                text(&o)
            );
            assert_same_tree(reference, &target);
            tally.clean_restores += 1;
            continue;
        };
        let got = if target.exists() {
            tree_digest(&target)
        } else {
            BTreeMap::new()
        };
        let want = tree_digest(reference);
        // Never a wrong or stray file (a left-over temp file counts).
        for (p, v) in &got {
            assert_eq!(
                want.get(p),
                Some(v),
                "{what}: {} is wrong or stray",
                p.display()
            );
        }
        if manifest_error.is_some() {
            assert!(
                !o.status.success(),
                "{what}: damaged manifest restored\n{stderr}"
            );
            assert!(
                stderr.contains(id.as_str()),
                "{what}: error lacks the id\n{stderr}"
            );
            assert!(
                got.is_empty(),
                "{what}: files restored from a damaged manifest"
            );
            continue;
        }
        let dirs: Vec<&String> = files.keys().filter(|f| f.ends_with('/')).collect();
        let under_damaged_dir = |p: &Path| {
            let s = p.to_str().unwrap();
            dirs.iter()
                .any(|d| d.as_str() == "./" || s.starts_with(d.as_str()) || format!("{s}/") == **d)
        };
        let intact_allowed = |err: &str| err.contains("in an unreadable pack");
        // Directories whose node restore cannot read (not merely in a pack
        // whose trailer is unreadable, which restore reads through the index).
        let dirs_hard: Vec<&&String> = dirs
            .iter()
            .filter(|d| !intact_allowed(&files[**d]))
            .collect();
        if !o.status.success() && got.is_empty() && !dirs_hard.is_empty() {
            // Restore plans the whole snapshot before writing and gives up
            // when a directory node is unreadable (see the ignored test
            // below); check named that directory.
            tally.whole_snapshot_refused += 1;
            continue;
        }
        tally.intact_via_index += (dirs.len() - dirs_hard.len()) as u64;
        let mut refused_any = false;
        for (p, (kind, ..)) in &want {
            if kind != "file" {
                continue;
            }
            let ps = p.to_str().unwrap().to_string();
            let named = files.get(&ps);
            match (named, got.contains_key(p)) {
                (None, true) => {}
                (None, false) if under_damaged_dir(p) => {}
                (None, false) => panic!(
                    "{what}: {ps} was not restored but check did not name it\n{}\n{}",
                    text(&o),
                    check.text
                ),
                (Some(_), false) => {
                    assert!(
                        stderr.contains(&format!("{ps}: not restored")),
                        "{what}: restore did not name {ps}\n{stderr}"
                    );
                    refused_any = true;
                    tally.refused += 1;
                }
                (Some(err), true) => {
                    assert!(
                        intact_allowed(err),
                        "{what}: check named {ps} ({err}) but it restored intact"
                    );
                    tally.intact_via_index += 1;
                }
            }
        }
        assert_eq!(
            !o.status.success(),
            refused_any || !dirs_hard.is_empty(),
            "{what}: exit status vs refused files\n{}",
            text(&o)
        );
    }
}

fn report(case: &str, tally: &Tally, extra: &str) {
    eprintln!("fault matrix: {case}: {tally:?} {extra}");
}

#[test]
fn bit_flip_in_a_pack() {
    let mut tally = Tally::default();
    for trial in 0..trials() {
        let mut rng = Rng::new(1, trial);
        let t = copy_of_base();
        let all = packs(&t.store());
        let p = rng.pick(&all).clone();
        let mut bytes = fs::read(&p).unwrap();
        let off = rng.below(bytes.len() as u64) as usize;
        let bit = rng.below(8);
        bytes[off] ^= 1 << bit;
        fs::write(&p, &bytes).unwrap();
        let what = format!(
            "bit flip trial {trial}: pack {} byte {off} bit {bit}",
            pack_hex(&p)
        );
        let c = run_check(&t, &what);
        assert_eq!(c.code, Some(1), "{what}\n{}", c.text);
        // Any flip changes the pack's hash, so the pack is always named.
        assert!(
            c.damaged_packs().contains(&pack_hex(&p)),
            "{what}\n{}",
            c.text
        );
        // Outside the header's version and reserved bytes, a flip damages
        // a frame or the trailer, so some snapshot loses a file (every
        // chunk is used by the snapshot that stored it).
        if !(8..pack::HEADER_LEN as usize).contains(&off) {
            assert!(!c.damaged_snapshots().is_empty(), "{what}\n{}", c.text);
        }
        restore_all(&t, &c, &what, &mut tally);
        tally.trials += 1;
    }
    report("bit flip", &tally, "");
}

#[test]
fn truncated_pack() {
    let mut tally = Tally::default();
    for trial in 0..trials() {
        let mut rng = Rng::new(2, trial);
        let t = copy_of_base();
        let all = packs(&t.store());
        let p = rng.pick(&all).clone();
        let len = fs::metadata(&p).unwrap().len();
        let keep = rng.below(len);
        fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(keep)
            .unwrap();
        let what = format!(
            "truncate trial {trial}: pack {} to {keep} of {len}",
            pack_hex(&p)
        );
        let c = run_check(&t, &what);
        assert_eq!(c.code, Some(1), "{what}\n{}", c.text);
        assert!(
            c.damaged_packs().contains(&pack_hex(&p)),
            "{what}\n{}",
            c.text
        );
        assert!(!c.damaged_snapshots().is_empty(), "{what}\n{}", c.text);
        restore_all(&t, &c, &what, &mut tally);
        tally.trials += 1;
    }
    report("truncated pack", &tally, "");
}

#[test]
fn deleted_pack() {
    let mut tally = Tally::default();
    let n = packs(&base().scratch.store()).len() as u64;
    for trial in 0..trials().min(n) {
        let t = copy_of_base();
        let all = packs(&t.store());
        // Every pack once (in a seeded order) before any twice.
        let p = all[((trial + Rng::new(3, 0).below(n)) % n) as usize].clone();
        fs::remove_file(&p).unwrap();
        let what = format!("delete trial {trial}: pack {}", pack_hex(&p));
        let c = run_check(&t, &what);
        assert_eq!(c.code, Some(1), "{what}\n{}", c.text);
        // The pack is gone and the index forgets it on open, so check
        // names what it cost: snapshots and files with missing chunks.
        let damaged = c.damaged_snapshots();
        assert!(!damaged.is_empty(), "{what}\n{}", c.text);
        for (_, files) in damaged.values() {
            for err in files.values() {
                assert!(err.contains("missing"), "{what}: {err}");
            }
        }
        restore_all(&t, &c, &what, &mut tally);
        tally.trials += 1;
    }
    report("deleted pack", &tally, "");
}

#[test]
fn deleted_index_is_rebuilt() {
    let t = copy_of_base();
    fs::remove_dir_all(t.store().join("index")).unwrap();
    let c = run_check(&t, "deleted index");
    assert_eq!(c.code, Some(0), "{}", c.text);
    assert_eq!(c.json["status"], "clean");
    assert!(c.text.contains("no damage found"), "{}", c.text);
    let mut tally = Tally::default();
    restore_all(&t, &c, "deleted index", &mut tally);
    assert_eq!(tally.clean_restores, base().snapshots.len() as u64);
}

/// Overwrites 1 to 8 random runs of 1 to 64 bytes of `path` with random bytes.
fn garble(rng: &mut Rng, path: &Path) -> String {
    let mut bytes = fs::read(path).unwrap();
    if bytes.is_empty() {
        return "empty".into();
    }
    let mut runs = Vec::new();
    for _ in 0..1 + rng.below(8) {
        let off = rng.below(bytes.len() as u64) as usize;
        let n = 1 + rng.below(64) as usize;
        let end = (off + n).min(bytes.len());
        let before = bytes[off..end].to_vec();
        for b in &mut bytes[off..end] {
            *b = rng.next() as u8;
        }
        if bytes[off..end] != before[..] {
            runs.push(format!("{off}+{}", end - off));
        }
    }
    fs::write(path, &bytes).unwrap();
    runs.join(",")
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Garbled sled files. The index is only a cache: either sled still opens
/// it (and check passes), or every command fails with one clear line
/// naming the index, and removing `index/` makes the store whole again.
#[test]
fn garbled_index() {
    let mut tally = Tally::default();
    let (mut opened, mut refused) = (0, Vec::new());
    for trial in 0..trials() {
        let mut rng = Rng::new(4, trial);
        let t = copy_of_base();
        let files = files_under(&t.store().join("index"));
        let f = rng.pick(&files).clone();
        let runs = garble(&mut rng, &f);
        let name = f.strip_prefix(t.store()).unwrap().display().to_string();
        let what = format!("garbled index trial {trial}: {name} at {runs}");
        let c = run_check(&t, &what);
        match c.code {
            Some(0) => opened += 1,
            Some(2) => {
                // Could not run: one clear line that names the index and
                // says what to do.
                let errors: Vec<&str> = c
                    .text
                    .lines()
                    .filter(|l| l.starts_with("cairn: error:"))
                    .collect();
                assert_eq!(errors.len(), 1, "{what}\n{}", c.text);
                assert!(errors[0].contains("index"), "{what}\n{}", c.text);
                assert!(errors[0].contains("remove"), "{what}\n{}", c.text);
                refused.push(name.clone());
                fs::remove_dir_all(t.store().join("index")).unwrap();
                let again = run_check(&t, &what);
                assert_eq!(
                    again.code,
                    Some(0),
                    "{what}: after removing index/\n{}",
                    again.text
                );
            }
            other => panic!("{what}: check exit {other:?}\n{}", c.text),
        }
        let clean = run_check(&t, &what);
        restore_all(&t, &clean, &what, &mut tally);
        tally.trials += 1;
    }
    report(
        "garbled index",
        &tally,
        &format!(
            "opened and clean: {opened}; unusable until index/ was removed: {} ({refused:?})",
            refused.len()
        ),
    );
}

#[test]
fn garbled_manifest() {
    let mut tally = Tally::default();
    for trial in 0..trials() {
        let mut rng = Rng::new(5, trial);
        let t = copy_of_base();
        let ids: Vec<&String> = base().snapshots.iter().map(|(id, _)| id).collect();
        let id = (*rng.pick(&ids)).clone();
        let path = t.store().join("snapshots").join(&id);
        let how = if rng.below(4) == 0 {
            let len = fs::metadata(&path).unwrap().len();
            let keep = rng.below(len);
            fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(keep)
                .unwrap();
            format!("truncated to {keep} of {len}")
        } else {
            format!("garbled at {}", garble(&mut rng, &path))
        };
        let what = format!("manifest trial {trial}: {id} {how}");
        let c = run_check(&t, &what);
        assert_eq!(c.code, Some(1), "{what}\n{}", c.text);
        let damaged = c.damaged_snapshots();
        assert_eq!(
            damaged.keys().collect::<Vec<_>>(),
            vec![&id],
            "{what}\n{}",
            c.text
        );
        assert!(damaged[&id].0.is_some(), "{what}: no manifest error");
        restore_all(&t, &c, &what, &mut tally);
        tally.trials += 1;
    }
    report("garbled manifest", &tally, "");
}

/// Rewrites the first pack holding a chunk `drop` chooses without that
/// chunk (frames re-encoded, the pack renamed to its new hash), as a
/// future prune could leave a store that lost one chunk. Returns the
/// chunk's id.
fn remove_one_chunk(store: &Path, drop: impl Fn(&pack::PackEntry, &[u8]) -> bool) -> ChunkId {
    for p in packs(store) {
        let bytes = fs::read(&p).unwrap();
        let trailer = pack::parse_pack(&bytes).unwrap();
        let frame = |e: &pack::PackEntry| {
            let at = e.frame_offset as usize;
            pack::decode_frame(&bytes[at..at + e.frame_len as usize]).unwrap()
        };
        let Some(victim) = trailer.entries.iter().find(|e| {
            let raw = frame(e);
            drop(e, pack::chunk_in_frame(&raw, e).unwrap())
        }) else {
            continue;
        };
        let mut b = pack::PackBuilder::new(Vec::new()).unwrap();
        let mut rest = &trailer.entries[..];
        while let Some(first) = rest.first() {
            let n = rest
                .iter()
                .take_while(|e| e.frame_offset == first.frame_offset)
                .count();
            let raw = frame(first);
            let mut kept = Vec::new();
            let mut chunks = Vec::new();
            for e in &rest[..n] {
                if e.id != victim.id {
                    kept.extend_from_slice(pack::chunk_in_frame(&raw, e).unwrap());
                    chunks.push((e.id, e.kind, e.len));
                }
            }
            if !chunks.is_empty() {
                b.add_frame(&pack::encode_frame(&kept, 3).unwrap(), &chunks)
                    .unwrap();
            }
            rest = &rest[n..];
        }
        let (id, _, _, out) = b.finish().unwrap();
        fs::write(
            store.join("packs").join(format!("{}.pack", id.to_hex())),
            out,
        )
        .unwrap();
        fs::remove_file(&p).unwrap();
        return victim.id;
    }
    panic!("no chunk to remove");
}

/// Root tree ids of every snapshot in the store.
fn root_trees(store: &Path) -> BTreeSet<ChunkId> {
    let mut out = BTreeSet::new();
    for e in fs::read_dir(store.join("snapshots")).unwrap() {
        let m = Manifest::decode(&fs::read(e.unwrap().path()).unwrap()).unwrap();
        out.extend(m.roots.iter().filter_map(|r| r.tree));
    }
    out
}

/// A sub-directory's tree node (not a root, not empty).
fn is_sub_directory(roots: &BTreeSet<ChunkId>, e: &pack::PackEntry, b: &[u8]) -> bool {
    e.kind == pack::BlobKind::Meta
        && !roots.contains(&e.id)
        && TreeNode::decode(b).is_ok_and(|n| !n.entries.is_empty())
}

/// A lost directory node: check names that directory (with a trailing
/// `/`) in every snapshot that has it, and nothing else; restore fails
/// without writing a wrong file.
#[test]
fn missing_directory_node_names_the_directory() {
    let t = copy_of_base();
    let roots = root_trees(&t.store());
    let lost = remove_one_chunk(&t.store(), |e, b| is_sub_directory(&roots, e, b));
    let what = format!("missing directory node {}", lost.short());
    let c = run_check(&t, &what);
    assert_eq!(c.code, Some(1), "{what}\n{}", c.text);
    let damaged = c.damaged_snapshots();
    assert!(!damaged.is_empty(), "{what}\n{}", c.text);
    for (id, (manifest_error, files)) in &damaged {
        assert!(manifest_error.is_none(), "{what}: {id}");
        for (path, err) in files {
            assert!(path.ends_with('/') && path != "./", "{what}: {id}: {path}");
            assert!(err.contains(&lost.to_hex()), "{what}: {id}: {path}: {err}");
            assert!(err.contains("missing"), "{what}: {err}");
        }
    }
    let mut tally = Tally::default();
    restore_all(&t, &c, &what, &mut tally);
    report("missing directory node", &tally, "");
}

/// A lost chunk-list node: check names exactly the file (or files) whose
/// list uses it; restore refuses those files by name and restores the rest.
#[test]
fn missing_list_node_names_the_file() {
    let t = copy_of_base();
    let lost = remove_one_chunk(&t.store(), |e, b| {
        e.kind == pack::BlobKind::Meta && ListNode::decode(b).is_ok()
    });
    let what = format!("missing list node {}", lost.short());
    let c = run_check(&t, &what);
    assert_eq!(c.code, Some(1), "{what}\n{}", c.text);
    let damaged = c.damaged_snapshots();
    assert!(!damaged.is_empty(), "{what}\n{}", c.text);
    for (id, (_, files)) in &damaged {
        for (path, err) in files {
            assert!(!path.ends_with('/'), "{what}: {id}: {path}");
            assert!(err.contains(&lost.to_hex()), "{what}: {id}: {path}: {err}");
        }
    }
    let mut tally = Tally::default();
    restore_all(&t, &c, &what, &mut tally);
    assert!(tally.refused > 0, "{what}: {tally:?}");
    assert_eq!(tally.whole_snapshot_refused, 0, "{what}: {tally:?}");
    report("missing list node", &tally, "");
}

/// Restore gives up on the whole snapshot when one directory node is
/// unreadable, although the files outside that directory are intact and
/// check names only the directory. ARCHITECTURE.md: "A file that fails is
/// reported by name and the others are still restored". Ignored until
/// restore skips (and names) an unreadable directory.
#[test]
fn missing_directory_node_fails_only_that_directory() {
    let t = copy_of_base();
    let roots = root_trees(&t.store());
    remove_one_chunk(&t.store(), |e, b| is_sub_directory(&roots, e, b));
    let c = run_check(&t, "missing directory node");
    for (id, reference) in &base().snapshots {
        let Some((None, files)) = c.damaged_snapshots().get(id).cloned() else {
            continue;
        };
        let target = t.path(&format!("r-{id}"));
        let o = t.cairn(&[
            "restore",
            "--snapshot",
            id,
            "--target",
            target.to_str().unwrap(),
        ]);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        let got = if target.exists() {
            tree_digest(&target)
        } else {
            BTreeMap::new()
        };
        for dir in files.keys() {
            let dir = dir.trim_end_matches('/');
            assert!(err.contains(dir), "restore should name {dir}\n{err}");
        }
        for (path, v) in tree_digest(reference) {
            let lost = files
                .keys()
                .any(|d| path.starts_with(d.trim_end_matches('/')));
            if !lost {
                assert_eq!(
                    got.get(&path),
                    Some(&v),
                    "{id}: {} not restored",
                    path.display()
                );
            }
        }
    }
}

/// A garbled sled index makes every command fail until `index/` is removed
/// by hand, though the index is only a cache (ARCHITECTURE.md: "a damaged
/// ... index clears it and rebuilds it"). Even `cairn index rebuild` fails,
/// as it opens the store first. Ignored until `Store::open` rebuilds an
/// index sled cannot open.
#[test]
fn garbled_index_is_rebuilt() {
    let t = copy_of_base();
    let conf = t.store().join("index/sled/conf");
    let mut b = fs::read(&conf).unwrap();
    for x in b.iter_mut().take(16) {
        *x ^= 0x5a;
    }
    fs::write(&conf, b).unwrap();
    t.ok(&["list"]);
    let c = run_check(&t, "garbled index conf");
    assert_eq!(c.code, Some(0), "{}", c.text);
}

/// Exit codes: 0 clean, 1 damaged (above), 2 when the check cannot run
/// (no store, not a store, store locked, bad arguments), with one error line.
#[test]
fn check_exit_codes() {
    let t = copy_of_base();
    assert_eq!(t.cairn(&["check"]).status.code(), Some(0));
    let could_not_run = |o: &Output, what: &str| {
        no_panic(o, what);
        assert_eq!(o.status.code(), Some(2), "{what}\n{}", text(o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{what}\n{err}");
        err.into_owned()
    };
    let other = Scratch::new();
    let err = could_not_run(&other.cairn(&["check"]), "missing store");
    assert!(err.contains("no cairn store"), "{err}");
    fs::create_dir_all(other.store().join("packs")).unwrap();
    could_not_run(&other.cairn(&["check", "--read-data"]), "not a store");
    // A usage error: clap's exit code 2 and its message.
    let o = t.cairn(&["check", "--read-data-subset", "4/3"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("4/3"),
        "{}",
        text(&o)
    );
    // Another process holds the store lock (until its stdin closes).
    let mut holder = std::process::Command::new("flock")
        .arg("--close")
        .arg(t.store().join("lock"))
        .args(["sh", "-c", "echo locked; read x"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("flock(1)");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    let o = t.cairn(&["check"]);
    drop(holder.stdin.take());
    holder.wait().unwrap();
    could_not_run(&o, "locked store");
    assert_eq!(t.cairn(&["check"]).status.code(), Some(0));
}

/// `--read-data-subset N/M` slices cover every pack exactly once; `P%`
/// picks the same packs every run.
#[test]
fn check_subsets() {
    let t = copy_of_base();
    let json = |args: &[&str]| -> serde_json::Value {
        let mut a = vec!["--json", "check"];
        a.extend_from_slice(args);
        serde_json::from_str(&t.ok(&a)).unwrap()
    };
    let all = json(&["--read-data"]);
    let packs = all["packs"].as_u64().unwrap();
    assert_eq!(all["packs_checked"].as_u64(), Some(packs));
    assert!(packs >= 3, "{all}");
    for m in [1u64, 2, 3, packs + 1] {
        let (mut n_packs, mut bytes) = (0, 0);
        for n in 1..=m {
            let r = json(&["--read-data-subset", &format!("{n}/{m}")]);
            assert_eq!(r["status"], "clean");
            n_packs += r["packs_checked"].as_u64().unwrap();
            bytes += r["bytes_checked"].as_u64().unwrap();
        }
        assert_eq!(n_packs, packs, "slices of {m}");
        assert_eq!(
            bytes,
            all["bytes_checked"].as_u64().unwrap(),
            "slices of {m}"
        );
    }
    let a = json(&["--read-data-subset", "50%"]);
    let b = json(&["--read-data-subset", "50%"]);
    assert_eq!(a["packs_checked"], b["packs_checked"]);
    assert_eq!(a["bytes_checked"], b["bytes_checked"]);
    let structure = json(&[]);
    assert_eq!(structure["packs_checked"].as_u64(), Some(0));
    assert!(structure["tree_nodes"].as_u64().unwrap() > 0);
}

/// A pack deleted behind cairn's back: the next open rebuilds the index
/// and names the pack that is gone.
#[test]
fn a_vanished_pack_is_named_when_the_index_is_rebuilt() {
    let s = Scratch::new();
    let data = s.path("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("a.bin"), SeededRng(9).bytes(200_000)).unwrap();
    s.ok(&["init"]);
    s.snapshot(&data);
    let pack = fs::read_dir(s.store().join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    fs::remove_file(&pack).unwrap();
    let out = s.cairn(&["list"]);
    let err = String::from_utf8_lossy(&out.stderr);
    let name = pack.file_stem().unwrap().to_str().unwrap();
    assert!(
        err.contains("gone or changed size") && err.contains(name),
        "{err}"
    );
}
