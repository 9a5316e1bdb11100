//! Hostile snapshots, forged by hand with cairn-format's public API (tree
//! nodes and file contents packed into a real pack, a manifest beside
//! it): restore refuses every name that is not a plain path component,
//! and never writes outside its target, whatever the snapshot or the
//! target directory already holds.
//!
//! Forged records start from templates taken from a real snapshot (struct
//! update syntax), so fields added to the format later keep their
//! engine-made values and these tests keep compiling.
#![allow(clippy::needless_update)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cairn_store::format::pack::{self, encode_frame, BlobKind, PackBuilder};
use cairn_store::format::{
    ChunkId, ChunkList, ContentLayout, EntryKind, EntryMeta, FileContent, ListChild, Manifest,
    SnapshotId, SnapshotStats, SourceRoot, TreeEntry, TreeNode,
};
use cairn_store::restore::{self, RestoreOptions};
use cairn_store::snapshot::{self, SnapshotOptions, SourceSpec};
use cairn_store::{NoProgress, Store, StoreError};

const FILE_MODE: u32 = 0o100644;
const DIR_MODE: u32 = 0o040755;
const LINK_MODE: u32 = 0o120777;

fn meta(mode: u32) -> EntryMeta {
    EntryMeta {
        mode,
        mtime_ns: 1_700_000_000_000_000_000,
        ctime_ns: 1_700_000_000_000_000_000,
        ino: 1,
        dev: 1,
    }
}

/// Records made by the engine itself, for struct update syntax.
struct Templates {
    manifest: Manifest,
    root: SourceRoot,
    file: TreeEntry,
    content: FileContent,
    child: ListChild,
    dir: TreeEntry,
    link: TreeEntry,
}

/// The chunk `id` from the packs of the store at `store`.
fn read_chunk(store: &Path, id: &ChunkId) -> Vec<u8> {
    for e in fs::read_dir(store.join("packs")).unwrap() {
        let bytes = fs::read(e.unwrap().path()).unwrap();
        for entry in pack::parse_pack(&bytes).unwrap().entries {
            if entry.id == *id {
                let start = entry.frame_offset as usize;
                let frame = &bytes[start..start + entry.frame_len as usize];
                let raw = pack::decode_frame(frame).unwrap();
                return pack::chunk_in_frame(&raw, &entry).unwrap().to_vec();
            }
        }
    }
    panic!("chunk {id:?} not found");
}

fn templates() -> &'static Templates {
    static T: OnceLock<Templates> = OnceLock::new();
    T.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        fs::create_dir_all(data.join("d")).unwrap();
        fs::write(data.join("f"), b"template").unwrap();
        std::os::unix::fs::symlink("f", data.join("l")).unwrap();
        let store_path = tmp.path().join("store");
        Store::init(&store_path).unwrap();
        let store = Store::open(&store_path).unwrap();
        let opts = SnapshotOptions {
            sources: vec![SourceSpec {
                label: "data".into(),
                path: data.clone(),
            }],
            ..Default::default()
        };
        let manifest = snapshot::snapshot(&store, &opts, &NoProgress)
            .unwrap()
            .manifest;
        let root = manifest.roots[0].clone();
        let node = TreeNode::decode(&read_chunk(&store_path, &root.tree.unwrap())).unwrap();
        let by_name = |n: &[u8]| node.entries.iter().find(|e| e.name == n).unwrap().clone();
        let file = by_name(b"f");
        let EntryKind::File(content) = file.kind.clone() else {
            panic!("f is not a file")
        };
        let ChunkList::Inline(children) = &content.chunks else {
            panic!("a small file's list is inline")
        };
        let child = children[0];
        Templates {
            manifest,
            root,
            content,
            child,
            file,
            dir: by_name(b"d"),
            link: by_name(b"l"),
        }
    })
}

/// Collects chunks for one hand-made snapshot, then writes them as one
/// pack plus a manifest.
#[derive(Default)]
struct Forge {
    chunks: Vec<(Vec<u8>, BlobKind)>,
}

impl Forge {
    fn file(&mut self, name: &[u8], content: &[u8]) -> TreeEntry {
        let id = ChunkId::of(content);
        let children = if content.is_empty() {
            Vec::new()
        } else {
            self.chunks.push((content.to_vec(), BlobKind::Data));
            vec![ListChild {
                id,
                len: content.len() as u64,
                tag: 0,
                ..templates().child
            }]
        };
        TreeEntry {
            name: name.to_vec(),
            meta: meta(FILE_MODE),
            kind: EntryKind::File(FileContent {
                size: content.len() as u64,
                hash: id.0,
                layout: ContentLayout::Whole,
                chunks: ChunkList::Inline(children),
                ..templates().content.clone()
            }),
            ..templates().file.clone()
        }
    }

    fn symlink(&mut self, name: &[u8], target: &[u8]) -> TreeEntry {
        TreeEntry {
            name: name.to_vec(),
            meta: meta(LINK_MODE),
            kind: EntryKind::Symlink(target.to_vec()),
            ..templates().link.clone()
        }
    }

    /// A tree node of `entries` (sorted here; names must be unique).
    fn tree(&mut self, mut entries: Vec<TreeEntry>) -> ChunkId {
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let node = TreeNode { entries };
        let bytes = node.encode().unwrap();
        // The engine's own decoder must accept what we forge (sorted, unique).
        TreeNode::decode(&bytes).expect("forged tree node decodes");
        let id = ChunkId::of(&bytes);
        self.chunks.push((bytes, BlobKind::Meta));
        id
    }

    fn dir(&mut self, name: &[u8], entries: Vec<TreeEntry>) -> TreeEntry {
        let id = self.tree(entries);
        TreeEntry {
            name: name.to_vec(),
            meta: meta(DIR_MODE),
            kind: EntryKind::Dir(id),
            ..templates().dir.clone()
        }
    }

    /// Writes the pack and the manifest into the (initialised) store.
    fn write(self, store: &Path, id: SnapshotId, roots: Vec<SourceRoot>) {
        let mut b = PackBuilder::new(Vec::new()).unwrap();
        let mut seen = std::collections::HashSet::new();
        for (bytes, kind) in &self.chunks {
            let cid = ChunkId::of(bytes);
            if !seen.insert(cid) {
                continue;
            }
            let frame = encode_frame(bytes, 3).unwrap();
            b.add_frame(&frame, &[(cid, *kind, bytes.len() as u32)])
                .unwrap();
        }
        let (pack_id, _, _, bytes) = b.finish().unwrap();
        fs::write(
            store
                .join("packs")
                .join(format!("{}.pack", pack_id.to_hex())),
            bytes,
        )
        .unwrap();
        let m = Manifest {
            id,
            parent: None,
            hostname: "forge".into(),
            cairn_version: "0".into(),
            finished_unix: id.unix(),
            roots,
            stats: SnapshotStats::default(),
            labels: BTreeMap::new(),
            ..templates().manifest.clone()
        };
        fs::write(
            store.join("snapshots").join(id.to_string()),
            m.encode().unwrap(),
        )
        .unwrap();
    }
}

fn tree_root(label: &str, tree: ChunkId) -> SourceRoot {
    SourceRoot {
        label: label.into(),
        path: format!("/srv/{label}"),
        tree: Some(tree),
        file: None,
        ..templates().root.clone()
    }
}

/// Everything under `dir` except the subtrees in `skip`: relative path ->
/// (is symlink, size, content or link target).
fn digest(dir: &Path, skip: &[PathBuf]) -> BTreeMap<PathBuf, (bool, u64, Vec<u8>)> {
    fn walk(
        root: &Path,
        dir: &Path,
        skip: &[PathBuf],
        out: &mut BTreeMap<PathBuf, (bool, u64, Vec<u8>)>,
    ) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if skip.contains(&p) {
                continue;
            }
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_owned();
            if m.file_type().is_symlink() {
                let t = fs::read_link(&p).unwrap();
                out.insert(rel, (true, 0, t.as_os_str().as_bytes().to_vec()));
            } else if m.is_dir() {
                out.insert(rel, (false, 0, Vec::new()));
                walk(root, &p, skip, out);
            } else {
                out.insert(rel, (false, m.size(), fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, skip, &mut out);
    out
}

/// A scratch area: `store/`, `out/target` (the restore target, not yet
/// created), and `outside/` with a sentinel file and an empty directory
/// that hostile snapshots aim at.
struct Arena {
    dir: tempfile::TempDir,
}

impl Arena {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Store::init(&dir.path().join("store")).unwrap();
        fs::create_dir_all(dir.path().join("out")).unwrap();
        fs::create_dir_all(dir.path().join("outside/empty")).unwrap();
        fs::write(dir.path().join("outside/sentinel"), b"untouched").unwrap();
        Self { dir }
    }
    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }
    fn target(&self) -> PathBuf {
        self.dir.path().join("out/target")
    }
    fn outside(&self) -> PathBuf {
        self.dir.path().join("outside")
    }
    /// Digest of everything that is neither the store nor the target.
    fn surroundings(&self) -> BTreeMap<PathBuf, (bool, u64, Vec<u8>)> {
        digest(self.dir.path(), &[self.store(), self.target()])
    }
    fn restore(&self, id: SnapshotId, overwrite: bool) -> Result<(), StoreError> {
        let store = Store::open(&self.store()).unwrap();
        assert!(
            store.index_sync().unreadable_packs.is_empty(),
            "{:?}",
            store.index_sync()
        );
        restore::restore(
            &store,
            &RestoreOptions {
                snapshot: id,
                target: self.target(),
                overwrite,
                durability: restore::Durability::Synced,
            },
            &NoProgress,
        )
        .map(|_| ())
    }
}

fn sid(k: i64) -> SnapshotId {
    SnapshotId::from_unix(1_772_971_200 + k)
}

/// Refused as unsafe: a path in the snapshot, or something in the target
/// a restore must neither follow nor replace.
fn assert_unsafe(r: Result<(), StoreError>, case: &str) {
    match r {
        Err(StoreError::UnsafePath { detail }) => {
            assert!(!detail.is_empty(), "{case}: empty detail")
        }
        Err(StoreError::TargetConflict { path, .. }) => {
            assert!(path.is_absolute(), "{case}: {path:?}")
        }
        Err(e) => panic!("{case}: expected UnsafePath, got {e}"),
        Ok(()) => panic!("{case}: restore accepted a hostile snapshot"),
    }
}

/// Names that are not a single plain path component, at the top of a
/// tree, deeper down, as directories and as files: refused when planning,
/// before the target is even created.
#[test]
fn unsafe_names_are_refused_before_anything_is_written() {
    // (case, builder of the root tree's entries given the outside/ dir)
    type Build = Box<dyn Fn(&mut Forge, &Path) -> Vec<TreeEntry>>;
    let cases: Vec<(&str, Build)> = vec![
        ("file named ..", Box::new(|f, _| vec![f.file(b"..", b"x")])),
        ("file named .", Box::new(|f, _| vec![f.file(b".", b"x")])),
        ("empty name", Box::new(|f, _| vec![f.file(b"", b"x")])),
        (
            "file named ../escaped",
            Box::new(|f, _| vec![f.file(b"../escaped", b"x")]),
        ),
        (
            "file named ../../outside/pwned",
            Box::new(|f, _| vec![f.file(b"../../outside/pwned", b"x")]),
        ),
        (
            "file named a/b",
            Box::new(|f, _| vec![f.file(b"a/b", b"x")]),
        ),
        (
            "file with a NUL in its name",
            Box::new(|f, _| vec![f.file(b"a\0b", b"x")]),
        ),
        (
            "dir named .. holding a file",
            Box::new(|f, _| {
                let inner = f.file(b"escaped", b"x");
                vec![f.dir(b"..", vec![inner])]
            }),
        ),
        (
            "dir named . holding a file",
            Box::new(|f, _| {
                let inner = f.file(b"escaped", b"x");
                vec![f.dir(b".", vec![inner])]
            }),
        ),
        (
            "absolute file name into outside/",
            Box::new(|f, out| vec![f.file(out.join("pwned").as_os_str().as_bytes(), b"x")]),
        ),
        (
            "bad name deep down after good entries",
            Box::new(|f, _| {
                let ok = f.file(b"fine.txt", b"fine");
                let bad = f.file(b"..", b"x");
                let deeper = f.dir(b"c", vec![bad]);
                let b = f.dir(b"b", vec![deeper]);
                vec![ok, f.dir(b"a", vec![b])]
            }),
        ),
        (
            "symlink named ..",
            Box::new(|f, out| vec![f.symlink(b"..", out.as_os_str().as_bytes())]),
        ),
        (
            "symlink named a/b",
            Box::new(|f, out| vec![f.symlink(b"a/b", out.as_os_str().as_bytes())]),
        ),
    ];
    for (case, build) in cases {
        let a = Arena::new();
        let mut f = Forge::default();
        let entries = build(&mut f, &a.outside());
        let tree = f.tree(entries);
        f.write(&a.store(), sid(0), vec![tree_root("data", tree)]);
        let before = a.surroundings();
        assert_unsafe(a.restore(sid(0), false), case);
        assert_eq!(a.surroundings(), before, "{case}: wrote outside the target");
        assert!(
            !a.target().exists(),
            "{case}: target created before refusing"
        );
        // `plan` (used by `ls`) refuses the same way.
        let store = Store::open(&a.store()).unwrap();
        let m = store.load_manifest(sid(0)).unwrap();
        assert!(
            matches!(
                restore::plan(&store, &m),
                Err(StoreError::UnsafePath { .. })
            ),
            "{case}: plan accepted it"
        );
    }
}

/// A root that is a single file with an unsafe name, and unsafe root labels
/// (labels name directories when a snapshot has several roots).
#[test]
fn unsafe_root_file_names_and_labels_are_refused() {
    for bad in [&b".."[..], b".", b"", b"../escaped", b"x/y"] {
        let a = Arena::new();
        let mut f = Forge::default();
        let entry = f.file(bad, b"payload");
        f.write(
            &a.store(),
            sid(0),
            vec![SourceRoot {
                label: "db".into(),
                path: "/srv/db".into(),
                tree: None,
                file: Some(entry),
                ..templates().root.clone()
            }],
        );
        let before = a.surroundings();
        let case = format!("root file named {:?}", String::from_utf8_lossy(bad));
        assert_unsafe(a.restore(sid(0), false), &case);
        assert_eq!(a.surroundings(), before, "{case}");
        assert!(!a.target().exists(), "{case}");
    }
    for bad in ["..", ".", "", "a/b", "../escaped", "/abs"] {
        let a = Arena::new();
        let mut f = Forge::default();
        let good_file = f.file(b"inside", b"payload");
        let good = f.tree(vec![good_file]);
        let evil_file = f.file(b"escaped", b"payload");
        let evil = f.tree(vec![evil_file]);
        f.write(
            &a.store(),
            sid(0),
            vec![tree_root("data", good), tree_root(bad, evil)],
        );
        let before = a.surroundings();
        let case = format!("root label {bad:?}");
        assert_unsafe(a.restore(sid(0), false), &case);
        assert_eq!(a.surroundings(), before, "{case}");
        assert!(!a.target().exists(), "{case}");
    }
}

/// A symlink pointing outside is restored as a symlink (HitKeep data may
/// hold absolute links) but nothing is ever written through it: two roots
/// with the same label merge into one directory, where one root has
/// `d/s -> outside` and the other has a directory `d/s/` with a file in it.
/// Whichever root comes first, restore refuses (the symlink would replace
/// a directory) and the file never lands in `outside/`.
#[test]
fn nothing_is_written_through_a_symlink_from_the_snapshot() {
    for link_first in [true, false] {
        let a = Arena::new();
        let mut f = Forge::default();
        let link = f.symlink(b"s", a.outside().join("empty").as_os_str().as_bytes());
        let link_d = f.dir(b"d", vec![link]);
        let with_link = f.tree(vec![link_d]);
        let pwned = f.file(b"pwned", b"should not escape");
        let s_dir = f.dir(b"s", vec![pwned]);
        let file_d = f.dir(b"d", vec![s_dir]);
        let with_file = f.tree(vec![file_d]);
        let roots = if link_first {
            vec![tree_root("x", with_link), tree_root("x", with_file)]
        } else {
            vec![tree_root("x", with_file), tree_root("x", with_link)]
        };
        f.write(&a.store(), sid(0), roots);
        let before = a.surroundings();
        let r = a.restore(sid(0), false);
        let case = format!("link first: {link_first}");
        assert_eq!(a.surroundings(), before, "{case}: wrote outside the target");
        assert!(!a.outside().join("empty/pwned").exists(), "{case}");
        assert_unsafe(r, &case);
    }

    // A lone outward symlink: restored as a link, target untouched.
    let a = Arena::new();
    let mut f = Forge::default();
    let out = a.outside().join("sentinel");
    let link = f.symlink(b"link", out.as_os_str().as_bytes());
    let tree = f.tree(vec![link]);
    f.write(&a.store(), sid(0), vec![tree_root("data", tree)]);
    let before = a.surroundings();
    a.restore(sid(0), false).unwrap();
    assert_eq!(a.surroundings(), before);
    let l = a.target().join("link");
    assert!(fs::symlink_metadata(&l).unwrap().file_type().is_symlink());
    assert_eq!(fs::read_link(&l).unwrap(), out);
}

/// With `overwrite`, the target may already hold symlinks. A symlinked
/// directory on the way to a file is refused; a symlink where the snapshot
/// has a file or a symlink is replaced, never followed.
#[test]
fn overwrite_never_follows_symlinks_already_in_the_target() {
    // Directory `d` in the snapshot, symlink `d -> outside/empty` in the target.
    let a = Arena::new();
    let mut f = Forge::default();
    let inner = f.file(b"pwned", b"should not escape");
    let d = f.dir(b"d", vec![inner]);
    let tree = f.tree(vec![d]);
    f.write(&a.store(), sid(0), vec![tree_root("data", tree)]);
    fs::create_dir_all(a.target()).unwrap();
    std::os::unix::fs::symlink(a.outside().join("empty"), a.target().join("d")).unwrap();
    let before = a.surroundings();
    assert_unsafe(a.restore(sid(0), true), "symlinked dir in target");
    assert_eq!(a.surroundings(), before);
    assert_eq!(fs::read_dir(a.outside().join("empty")).unwrap().count(), 0);

    // Files and symlinks in the snapshot over symlinks in the target.
    let a = Arena::new();
    let mut f = Forge::default();
    let file = f.file(b"f", b"new content");
    let link = f.symlink(b"l", b"f");
    let tree = f.tree(vec![file, link]);
    f.write(&a.store(), sid(0), vec![tree_root("data", tree)]);
    fs::create_dir_all(a.target()).unwrap();
    let sentinel = a.outside().join("sentinel");
    std::os::unix::fs::symlink(&sentinel, a.target().join("f")).unwrap();
    std::os::unix::fs::symlink(&sentinel, a.target().join("l")).unwrap();
    let before = a.surroundings();
    a.restore(sid(0), true).unwrap();
    assert_eq!(a.surroundings(), before);
    assert_eq!(fs::read(&sentinel).unwrap(), b"untouched");
    let fm = fs::symlink_metadata(a.target().join("f")).unwrap();
    assert!(fm.is_file(), "f is still a symlink");
    assert_eq!(fs::read(a.target().join("f")).unwrap(), b"new content");
    assert_eq!(
        fs::read_link(a.target().join("l")).unwrap(),
        PathBuf::from("f")
    );
}

/// The forge itself is sound: a well-formed forged snapshot restores.
#[test]
fn a_well_formed_forged_snapshot_restores() {
    let a = Arena::new();
    let mut f = Forge::default();
    let one = f.file(b"one.txt", b"one");
    let empty = f.file(b"empty", b"");
    let sub = f.dir(b"sub", vec![one]);
    let link = f.symlink(b"link", b"sub/one.txt");
    let tree = f.tree(vec![sub, empty, link]);
    f.write(&a.store(), sid(0), vec![tree_root("data", tree)]);
    a.restore(sid(0), false).unwrap();
    assert_eq!(fs::read(a.target().join("sub/one.txt")).unwrap(), b"one");
    assert_eq!(fs::read(a.target().join("empty")).unwrap(), b"");
    assert_eq!(fs::read(a.target().join("link")).unwrap(), b"one");
}
