//! Taking a snapshot: walk each source root beside the parent snapshot,
//! classify every entry against the HitKeep layout and check the boundary
//! against the parent's, ingest the files that changed (databases before
//! their WALs), write tree nodes bottom-up, seal packs, and write the
//! manifest last. Until the manifest exists the snapshot is invisible; on
//! failure the packs this run sealed are removed again.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;

use cairn_format::{
    ChunkId, EntryClass, EntryKind, FileContent, Manifest, SnapshotId, SnapshotStats, SourceRoot,
    TreeEntry, TreeNode,
};

use crate::delta::DeltaBase;
use crate::error::{FormatContext, IoContext, Result, StoreError};
use crate::hitkeep::{self, ArchiveSpec, BoundaryBuilder, Classifier, HitkeepPaths};
use crate::ingest::Ingest;
use crate::packer::ChunkSink;
use crate::reader::ChunkReader;
use crate::store::Store;
use crate::walk::{entry_meta, DirPlan, EntryPlan, FileJob, ItemPlan, Walker};

/// Files smaller than this are ingested many at a time; larger ones one at
/// a time, each with parallel chunking inside.
const SMALL_FILE: u64 = 4 << 20;

/// One thing to snapshot.
#[derive(Clone, Debug)]
pub struct SourceSpec {
    /// Its label in the manifest (`data`, `db`, `archive`).
    pub label: String,
    /// A directory, or a single file.
    pub path: PathBuf,
}

/// How to take a snapshot.
#[derive(Clone, Debug, Default)]
pub struct SnapshotOptions {
    /// The HitKeep paths; their roots are snapshotted and the boundary recorded.
    pub hitkeep: Option<HitkeepPaths>,
    /// Roots to snapshot when `hitkeep` is `None`.
    pub sources: Vec<SourceSpec>,
    /// Read every file even when size, mtime, ctime and inode match the parent.
    pub full_read: bool,
    /// Take no parent (implies a full read).
    pub no_parent: bool,
    /// Refuse the snapshot when the boundary lost something against the parent.
    pub strict: bool,
    /// Labels stored in the manifest.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Take this id instead of the start time (an imported backup keeps
    /// its own timestamp); refused when a snapshot already has it.
    pub id: Option<SnapshotId>,
    /// When not empty, take only these paths (absolute, canonical) of the
    /// roots, with the directories leading to them.
    pub only: Vec<PathBuf>,
    /// Files (absolute, canonical) that may be stored as a patch against
    /// a base ([`DeltaBase`]) when that is smaller.
    pub delta_bases: HashMap<PathBuf, DeltaBase>,
}

/// Progress callbacks; the CLI draws bars from them.
pub trait Progress: Sync {
    /// The walk is done: this many files and bytes will be read.
    fn start(&self, _files: u64, _bytes: u64) {}
    /// Bytes were read.
    fn bytes(&self, _n: u64) {}
    /// A file was finished.
    fn file_done(&self) {}
}

/// A progress sink that ignores everything.
pub struct NoProgress;
impl Progress for NoProgress {}

/// What a snapshot did.
#[derive(Clone, Debug)]
pub struct SnapshotReport {
    /// The manifest written.
    pub manifest: Manifest,
    /// Things worth telling the user (vanished files, skipped specials).
    pub warnings: Vec<String>,
    /// Bytes the store grew by (packs plus manifest).
    pub store_growth: u64,
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The roots a snapshot with `opts` would take, checked: each exists, is
/// what it was given as, and lies outside the store. `repair --data-path`
/// asks before it changes anything.
pub fn checked_sources(store: &Store, opts: &SnapshotOptions) -> Result<Vec<SourceSpec>> {
    let sources = match &opts.hitkeep {
        Some(h) => {
            if !h.data.exists() {
                return Err(StoreError::SourceMissing {
                    what: "data path",
                    path: h.data.clone(),
                });
            }
            if !h.data.is_dir() {
                return Err(StoreError::Usage(format!(
                    "data path {} is not a directory",
                    h.data.display()
                )));
            }
            if h.db.exists() && !h.db.is_file() {
                return Err(StoreError::Usage(format!(
                    "control-plane database {} is not a file",
                    h.db.display()
                )));
            }
            if let ArchiveSpec::Local(a) = &h.archive {
                if a.exists() && !a.is_dir() {
                    return Err(StoreError::Usage(format!(
                        "archive directory {} is not a directory",
                        a.display()
                    )));
                }
            }
            h.sources()
        }
        None => opts.sources.clone(),
    };
    if sources.is_empty() {
        return Err(StoreError::Usage(
            "nothing to snapshot: no source given".into(),
        ));
    }
    for s in &sources {
        // What the user gave it as.
        let what = match s.label.as_str() {
            hitkeep::ROOT_DATA => "data path",
            hitkeep::ROOT_DB => "control-plane database",
            hitkeep::ROOT_DB_WAL => "control-plane database WAL",
            hitkeep::ROOT_ARCHIVE => "archive directory",
            _ => "source",
        };
        store.refuse_inside(what, &s.path)?;
        if fs::symlink_metadata(&s.path).is_err() {
            return Err(StoreError::SourceMissing {
                what,
                path: s.path.clone(),
            });
        }
    }
    Ok(sources)
}

/// Takes a snapshot into `store`.
pub fn snapshot(
    store: &Store,
    opts: &SnapshotOptions,
    progress: &dyn Progress,
) -> Result<SnapshotReport> {
    store.files().require_local("snapshot")?;
    let sources = checked_sources(store, opts)?;
    let id = match opts.id {
        Some(id) if store.manifest_ids()?.contains(&id) => {
            return Err(StoreError::SnapshotExists { id: id.to_string() })
        }
        Some(id) => id,
        None => store.next_snapshot_id(now_unix())?,
    };
    // The parent is the newest snapshot of a data path: an imported
    // backup run (newer, when imported after a snapshot) has other roots
    // and no boundary to compare with.
    let mut parent = None;
    if !opts.no_parent {
        for p in store.manifest_ids()?.iter().rev() {
            let m = store.load_manifest(*p)?;
            if !crate::import::is_backup_import(&m) {
                parent = Some(m);
                break;
            }
        }
    }
    let sink = ChunkSink::new(store);
    match take(store, &sink, id, parent.as_ref(), &sources, opts, progress) {
        Ok(r) => Ok(r),
        Err(e) => {
            sink.abandon();
            Err(e)
        }
    }
}

enum RootPlan {
    Dir(DirPlan),
    File(EntryPlan),
}

struct Root {
    label: String,
    path: PathBuf,
    plan: RootPlan,
}

fn file_name_bytes(path: &Path) -> Vec<u8> {
    path.file_name()
        .map(|n| n.as_bytes().to_vec())
        .unwrap_or_default()
}

fn take(
    store: &Store,
    sink: &ChunkSink<'_>,
    id: SnapshotId,
    parent: Option<&Manifest>,
    sources: &[SourceSpec],
    opts: &SnapshotOptions,
    progress: &dyn Progress,
) -> Result<SnapshotReport> {
    let reader = ChunkReader::new(store);
    let store_root = fs::canonicalize(store.root()).at(store.root())?;
    let mut walker = Walker {
        reader: &reader,
        cache: Default::default(),
        full_read: opts.full_read || opts.no_parent,
        exclude: vec![store_root],
        only: opts.only.clone(),
        files: Vec::new(),
        warnings: Vec::new(),
        excluded: Vec::new(),
        reused: 0,
        reused_bytes: 0,
    };

    // 1. Walk every root beside the parent's.
    let mut roots = Vec::new();
    for src in sources {
        let path = fs::canonicalize(&src.path).at(&src.path)?;
        let prev = parent.and_then(|p| p.roots.iter().find(|r| r.label == src.label));
        let m = fs::metadata(&path).at(&path)?;
        let meta = entry_meta(&m);
        let plan = if m.is_dir() {
            RootPlan::Dir(walker.dir(&path, prev.and_then(|r| r.tree))?)
        } else {
            let item = walker.file(&path, &meta, m.len(), prev.and_then(|r| r.file.as_ref()));
            RootPlan::File(EntryPlan {
                name: file_name_bytes(&path),
                meta,
                item,
                size: m.len(),
            })
        };
        roots.push(Root {
            label: src.label.clone(),
            path,
            plan,
        });
    }

    // 2. Classify and check the boundary before reading anything.
    let classifier = opts
        .hitkeep
        .as_ref()
        .map(Classifier::new)
        .unwrap_or_default();
    let mut classes: Vec<Vec<(Vec<String>, EntryClass)>> = Vec::new();
    for r in &roots {
        let mut out = Vec::new();
        match &r.plan {
            RootPlan::Dir(d) => classify_dir(&classifier, &r.label, d, &mut Vec::new(), &mut out),
            RootPlan::File(e) => {
                let rel = vec![String::from_utf8_lossy(&e.name).into_owned()];
                let class = classifier.classify(&r.label, &rel);
                out.push((rel, class));
            }
        }
        classes.push(out);
    }
    let parent_boundary = parent.and_then(|p| p.boundary.as_ref());
    // `left_out`: files in the walk that the snapshot does not hold after
    // all (gave up, vanished, a WAL newer than its database), as `label/rel`.
    let draft =
        |gave_up: &[String], left_out: &[String], iterations: &dyn Fn(usize, &[String]) -> u64| {
            opts.hitkeep.as_ref().map(|h| {
                let mut b = BoundaryBuilder::new(h);
                for x in &walker.excluded {
                    b.excluded(x.display().to_string());
                }
                for g in gave_up {
                    b.gave_up(g.clone());
                }
                for (ri, r) in roots.iter().enumerate() {
                    for (rel, class) in &classes[ri] {
                        let joined = rel.join("/");
                        let labelled = format!("{}/{joined}", r.label);
                        if gave_up.contains(&labelled) || left_out.contains(&labelled) {
                            continue;
                        }
                        let size = entry_size(&r.plan, rel);
                        b.file(class, &r.label, &joined, size, iterations(ri, rel));
                    }
                }
                b.finish(parent_boundary)
            })
        };
    if opts.strict {
        if let Some(b) = draft(&[], &[], &|_, _| 0) {
            let problems: Vec<String> = b
                .findings
                .iter()
                .filter(|f| hitkeep::is_problem(f))
                .cloned()
                .collect();
            if !problems.is_empty() {
                return Err(StoreError::Incomplete { findings: problems });
            }
        }
    }

    // 3. Ingest changed files: databases and everything else first, WALs
    //    after their databases; small files many at a time, large in turn.
    let files = std::mem::take(&mut walker.files);
    let total: u64 = files.iter().map(|f| f.size).sum();
    progress.start(files.len() as u64, total);
    let bytes_read = AtomicU64::new(0);
    let on_bytes = |n| progress.bytes(n);
    let ingest = Ingest {
        sink,
        reader: &reader,
        config: store.config(),
        bytes_read: &bytes_read,
        on_bytes: &on_bytes,
    };
    let read = |i: usize| match opts.delta_bases.get(&files[i].path) {
        Some(base) => ingest.file_against(&files[i].path, base),
        None => ingest.file_after(&files[i].path, files[i].parent.as_ref()),
    };
    let is_wal = |f: &FileJob| f.path.as_os_str().as_bytes().ends_with(b".wal");
    let mut results: Vec<Option<FileContent>> = vec![None; files.len()];
    let mut unstable: HashSet<PathBuf> = HashSet::new();
    let mut vanished: Vec<String> = Vec::new();
    let mut left_out: Vec<PathBuf> = Vec::new();
    let mut db_iterations: HashMap<PathBuf, u64> = HashMap::new();
    for wal_phase in [false, true] {
        let (small, large): (Vec<usize>, Vec<usize>) = (0..files.len())
            .filter(|&i| is_wal(&files[i]) == wal_phase)
            .partition(|&i| files[i].size < SMALL_FILE);
        let mut done: Vec<(usize, Result<FileContent>)> = small
            .par_iter()
            .map(|&i| {
                let r = read(i);
                progress.file_done();
                (i, r)
            })
            .collect();
        // Large files go two (one per core) at a time, so that one file's
        // serial steps (its reads, claims and pack appends) overlap the
        // other's parallel hashing and compression. Two threads outside
        // the rayon pool: each waits on its own rayon work without taking
        // up another file's (which would nest windows without bound).
        let mut large = large;
        large.sort_by_key(|&i| std::cmp::Reverse(files[i].size));
        let next = std::sync::Mutex::new(large.into_iter());
        let large_done = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..rayon::current_num_threads().clamp(1, 2) {
                scope.spawn(|| loop {
                    let Some(i) = next.lock().expect("file queue lock").next() else {
                        break;
                    };
                    let r = read(i);
                    progress.file_done();
                    large_done.lock().expect("results lock").push((i, r));
                });
            }
        });
        done.extend(large_done.into_inner().expect("results lock"));
        for (i, r) in done {
            match r {
                Ok(c) => results[i] = Some(c),
                // A file that kept changing is left out and reported, never
                // recorded torn.
                Err(StoreError::SourceUnstable { path, .. }) => {
                    unstable.insert(path);
                }
                // A file deleted between the walk and its read (a WAL
                // folded by a checkpoint, a processed import) is simply
                // not in this snapshot.
                Err(StoreError::Io { path, cause })
                    if cause.kind() == std::io::ErrorKind::NotFound && path == files[i].path =>
                {
                    vanished.push(format!("{}: vanished during the snapshot", path.display()));
                    left_out.push(path);
                }
                Err(e) => return Err(e),
            }
        }
        if !wal_phase {
            db_iterations = captured_iterations(&roots, &files, &results);
        }
    }
    // A WAL belongs with the database state it was captured after: if a
    // checkpoint moved the database on between the two reads, the WAL is
    // newer than the captured database and DuckDB would refuse the pair.
    for (i, f) in files.iter().enumerate() {
        if !is_wal(f) || results[i].is_none() {
            continue;
        }
        let name = f.path.as_os_str().as_bytes();
        let db = PathBuf::from(std::ffi::OsStr::from_bytes(
            name.strip_suffix(b".wal").unwrap_or(name),
        ));
        let captured = db_iterations.get(&db).copied();
        let now = live_iteration(&db);
        if captured.is_none() || captured != now {
            results[i] = None;
            left_out.push(f.path.clone());
            vanished.push(format!(
                "{}: left out: its database was checkpointed after it was captured",
                f.path.display()
            ));
        }
    }
    let labelled = |paths: &mut dyn Iterator<Item = &PathBuf>| -> Vec<String> {
        let paths: Vec<&PathBuf> = paths.collect();
        roots
            .iter()
            .flat_map(|r| {
                paths.iter().filter_map(move |p| {
                    let rel = p.strip_prefix(&r.path).ok()?;
                    let rel = if rel.as_os_str().is_empty() {
                        p.file_name()?.to_string_lossy().into_owned()
                    } else {
                        rel.display().to_string()
                    };
                    Some(format!("{}/{rel}", r.label))
                })
            })
            .collect()
    };
    let left_out = labelled(&mut left_out.iter());
    let gave_up = labelled(&mut unstable.iter());

    // 4. Trees bottom-up, then the boundary and the manifest.
    let mut stats = SnapshotStats {
        files_unchanged: walker.reused,
        bytes_read: bytes_read.load(Ordering::Relaxed),
        ..Default::default()
    };
    let mut iterations: Vec<Vec<(Vec<String>, u64)>> = vec![Vec::new(); roots.len()];
    let mut manifest_roots = Vec::new();
    for (ri, r) in roots.iter().enumerate() {
        let mut ctx = TreeCtx {
            sink,
            classifier: &classifier,
            label: &r.label,
            results: &mut results,
            stats: &mut stats,
            iterations: &mut iterations[ri],
        };
        let root = match &r.plan {
            RootPlan::Dir(d) => SourceRoot {
                label: r.label.clone(),
                path: r.path.display().to_string(),
                tree: Some(ctx.write_tree(d, &mut Vec::new())?),
                file: None,
            },
            RootPlan::File(e) => SourceRoot {
                label: r.label.clone(),
                path: r.path.display().to_string(),
                tree: None,
                file: ctx.entry(e, &mut Vec::new())?,
            },
        };
        manifest_roots.push(root);
    }
    let boundary = draft(&gave_up, &left_out, &|ri, rel| {
        iterations[ri]
            .iter()
            .find(|(r, _)| r == rel)
            .map_or(0, |(_, it)| *it)
    });
    if opts.strict {
        if let Some(b) = &boundary {
            let problems: Vec<String> = b
                .findings
                .iter()
                .filter(|f| hitkeep::is_problem(f))
                .cloned()
                .collect();
            if !problems.is_empty() {
                return Err(StoreError::Incomplete { findings: problems });
            }
        }
    }
    sink.finish()?;
    let c = &sink.counters;
    stats.new_chunks = c.new_chunks.load(Ordering::Relaxed);
    stats.new_data_bytes = c.new_data_bytes.load(Ordering::Relaxed);
    stats.new_meta_bytes = c.new_meta_bytes.load(Ordering::Relaxed);
    stats.added_pack_bytes = c.pack_bytes.load(Ordering::Relaxed);
    stats.new_packs = c.packs.load(Ordering::Relaxed);
    let mut warnings = walker.warnings;
    warnings.extend(vanished);
    for p in &unstable {
        warnings.push(format!(
            "{}: kept changing while read; left out of this snapshot",
            p.display()
        ));
    }
    let manifest = Manifest {
        id,
        parent: parent.map(|p| p.id),
        hostname: hostname(),
        cairn_version: env!("CARGO_PKG_VERSION").to_string(),
        finished_unix: now_unix(),
        roots: manifest_roots,
        stats,
        labels: opts.labels.clone(),
        boundary,
    };
    store.write_manifest(&manifest)?;
    let manifest_len = manifest.encode().what("manifest")?.len() as u64;
    Ok(SnapshotReport {
        store_growth: manifest.stats.added_pack_bytes + manifest_len,
        manifest,
        warnings,
    })
}

fn classify_dir(
    c: &Classifier,
    label: &str,
    dir: &DirPlan,
    rel: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, EntryClass)>,
) {
    for e in &dir.entries {
        rel.push(String::from_utf8_lossy(&e.name).into_owned());
        match &e.item {
            ItemPlan::Dir(d) => classify_dir(c, label, d, rel, out),
            ItemPlan::Reuse(_) | ItemPlan::Read { .. } => {
                out.push((rel.clone(), c.classify(label, rel)))
            }
            ItemPlan::Symlink(_) => {}
        }
        rel.pop();
    }
}

fn entry_size(plan: &RootPlan, rel: &[String]) -> u64 {
    match plan {
        RootPlan::File(e) => e.size,
        RootPlan::Dir(d) => {
            let mut dir = d;
            for (k, name) in rel.iter().enumerate() {
                let Some(e) = dir.entries.iter().find(|e| e.name == name.as_bytes()) else {
                    return 0;
                };
                match &e.item {
                    ItemPlan::Dir(sub) => dir = sub,
                    _ if k + 1 == rel.len() => return e.size,
                    _ => return 0,
                }
            }
            0
        }
    }
}

struct TreeCtx<'a, 'b, 's> {
    sink: &'a ChunkSink<'s>,
    classifier: &'a Classifier,
    label: &'a str,
    results: &'b mut [Option<FileContent>],
    stats: &'b mut SnapshotStats,
    iterations: &'b mut Vec<(Vec<String>, u64)>,
}

impl TreeCtx<'_, '_, '_> {
    /// The tree entry for `e`, or `None` when its capture gave up.
    fn entry(&mut self, e: &EntryPlan, rel: &mut Vec<String>) -> Result<Option<TreeEntry>> {
        rel.push(String::from_utf8_lossy(&e.name).into_owned());
        let kind = match &e.item {
            ItemPlan::Reuse(c) => Some(EntryKind::File(c.clone())),
            ItemPlan::Read { slot } => self.results[*slot].take().map(EntryKind::File),
            ItemPlan::Dir(d) => Some(EntryKind::Dir(self.write_tree(d, rel)?)),
            ItemPlan::Symlink(t) => Some(EntryKind::Symlink(t.clone())),
        };
        let class = match &kind {
            Some(EntryKind::File(c)) => {
                self.stats.files += 1;
                self.stats.logical_bytes += c.size;
                if let Some((_, iteration)) = c.layout.duckdb() {
                    self.iterations.push((rel.clone(), iteration));
                }
                self.classifier.classify(self.label, rel)
            }
            _ => EntryClass::Other,
        };
        rel.pop();
        Ok(kind.map(|kind| TreeEntry {
            name: e.name.clone(),
            meta: e.meta.clone(),
            kind,
            class,
        }))
    }

    fn write_tree(&mut self, dir: &DirPlan, rel: &mut Vec<String>) -> Result<ChunkId> {
        self.stats.dirs += 1;
        let mut node = TreeNode::default();
        for e in &dir.entries {
            if let Some(entry) = self.entry(e, rel)? {
                node.entries.push(entry);
            }
        }
        self.sink.put_meta(node.encode().what("tree node")?)
    }
}

/// The live-header iteration of every DuckDB file this snapshot holds,
/// read or taken from the parent, by absolute path.
fn captured_iterations(
    roots: &[Root],
    files: &[FileJob],
    results: &[Option<FileContent>],
) -> HashMap<PathBuf, u64> {
    fn walk(dir: &DirPlan, path: &Path, out: &mut HashMap<PathBuf, u64>) {
        for e in &dir.entries {
            let p = path.join(std::ffi::OsStr::from_bytes(&e.name));
            match &e.item {
                ItemPlan::Reuse(c) => {
                    if let Some((_, iteration)) = c.layout.duckdb() {
                        out.insert(p, iteration);
                    }
                }
                ItemPlan::Dir(d) => walk(d, &p, out),
                _ => {}
            }
        }
    }
    let mut out = HashMap::new();
    for r in roots {
        match &r.plan {
            RootPlan::Dir(d) => walk(d, &r.path, &mut out),
            RootPlan::File(e) => {
                if let ItemPlan::Reuse(c) = &e.item {
                    if let Some((_, iteration)) = c.layout.duckdb() {
                        out.insert(r.path.clone(), iteration);
                    }
                }
            }
        }
    }
    for (f, c) in files.iter().zip(results) {
        if let Some((_, iteration)) = c.as_ref().and_then(|c| c.layout.duckdb()) {
            out.insert(f.path.clone(), iteration);
        }
    }
    out
}

/// The live header's iteration of the DuckDB file at `path` now, if it is one.
fn live_iteration(path: &Path) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let f = fs::File::open(path).ok()?;
    let mut head = vec![0u8; crate::ingest::HEADER_AREA];
    f.read_exact_at(&mut head, 0).ok()?;
    crate::ingest::header_iteration(&head)
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
