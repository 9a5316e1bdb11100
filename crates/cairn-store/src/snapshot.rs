//! Taking a snapshot: walk each source root beside the parent snapshot,
//! ingest the files that changed, write tree nodes bottom-up, seal packs,
//! and write the manifest last. Until the manifest exists the snapshot is
//! invisible; on failure the packs this run sealed are removed again.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;

use cairn_format::{
    EntryKind, FileContent, Manifest, SnapshotId, SnapshotStats, SourceRoot, TreeEntry, TreeNode,
};

use crate::error::{FormatContext, IoContext, Result, StoreError};
use crate::ingest::Ingest;
use crate::packer::ChunkSink;
use crate::reader::ChunkReader;
use crate::store::Store;
use crate::walk::{entry_meta, unchanged, DirPlan, ItemPlan, Walker};

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
    /// The roots to snapshot.
    pub sources: Vec<SourceSpec>,
    /// Read every file even when size, mtime, ctime and inode match the parent.
    pub full_read: bool,
    /// Take no parent (implies a full read).
    pub no_parent: bool,
    /// Labels stored in the manifest.
    pub labels: std::collections::BTreeMap<String, String>,
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

/// Takes a snapshot of `opts.sources` into `store`.
pub fn snapshot(
    store: &Store,
    opts: &SnapshotOptions,
    progress: &dyn Progress,
) -> Result<SnapshotReport> {
    if opts.sources.is_empty() {
        return Err(StoreError::Usage(
            "nothing to snapshot: no source given".into(),
        ));
    }
    for s in &opts.sources {
        if fs::symlink_metadata(&s.path).is_err() {
            return Err(StoreError::SourceMissing {
                path: s.path.clone(),
            });
        }
    }
    let id = store.next_snapshot_id(now_unix())?;
    let parent = if opts.no_parent {
        None
    } else {
        match store.manifest_ids()?.last() {
            Some(p) => Some(store.load_manifest(*p)?),
            None => None,
        }
    };
    let sink = ChunkSink::new(store);
    match take(store, &sink, id, parent.as_ref(), opts, progress) {
        Ok(r) => Ok(r),
        Err(e) => {
            sink.abandon();
            Err(e)
        }
    }
}

fn take(
    store: &Store,
    sink: &ChunkSink<'_>,
    id: SnapshotId,
    parent: Option<&Manifest>,
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
        files: Vec::new(),
        warnings: Vec::new(),
        reused: 0,
        reused_bytes: 0,
    };
    // Walk every root.
    enum RootPlan {
        Dir(DirPlan),
        File(TreeEntry, Option<usize>),
    }
    let mut plans = Vec::new();
    for src in &opts.sources {
        let path = fs::canonicalize(&src.path).at(&src.path)?;
        let prev = parent.and_then(|p| p.roots.iter().find(|r| r.label == src.label));
        let m = fs::metadata(&path).at(&path)?;
        let meta = entry_meta(&m);
        if m.is_dir() {
            let plan = walker.dir(&path, meta, prev.and_then(|r| r.tree))?;
            plans.push((src, path, RootPlan::Dir(plan)));
        } else {
            let name = path
                .file_name()
                .map(|n| std::os::unix::ffi::OsStrExt::as_bytes(n).to_vec())
                .unwrap_or_default();
            let reuse = prev
                .and_then(|r| r.file.as_ref())
                .filter(|_| !walker.full_read)
                .and_then(|e| unchanged(e, &meta, m.len()));
            let (content, slot) = match reuse {
                Some(c) => (c, None),
                None => {
                    walker.files.push(crate::walk::FileJob {
                        path: path.clone(),
                        size: m.len(),
                    });
                    (placeholder(), Some(walker.files.len() - 1))
                }
            };
            let entry = TreeEntry {
                name,
                meta,
                kind: EntryKind::File(content),
            };
            plans.push((src, path, RootPlan::File(entry, slot)));
        }
    }
    let files = std::mem::take(&mut walker.files);
    let total: u64 = files.iter().map(|f| f.size).sum();
    progress.start(files.len() as u64, total);

    // Ingest changed files: small ones many at a time, large ones in turn.
    let bytes_read = AtomicU64::new(0);
    let on_bytes = |n| progress.bytes(n);
    let ingest = Ingest {
        sink,
        config: store.config(),
        bytes_read: &bytes_read,
        on_bytes: &on_bytes,
    };
    let mut results: Vec<Option<FileContent>> = vec![None; files.len()];
    let (small, large): (Vec<usize>, Vec<usize>) =
        (0..files.len()).partition(|&i| files[i].size < SMALL_FILE);
    let small_done: Vec<(usize, Result<FileContent>)> = small
        .par_iter()
        .map(|&i| {
            let r = ingest.file(&files[i].path);
            progress.file_done();
            (i, r)
        })
        .collect();
    for (i, r) in small_done {
        results[i] = Some(r?);
    }
    for i in large {
        results[i] = Some(ingest.file(&files[i].path)?);
        progress.file_done();
    }

    // Trees bottom-up, then the manifest.
    let mut stats = SnapshotStats {
        files_unchanged: walker.reused,
        bytes_read: bytes_read.load(Ordering::Relaxed),
        ..Default::default()
    };
    let mut roots = Vec::new();
    for (src, path, plan) in plans {
        let root = match plan {
            RootPlan::Dir(d) => SourceRoot {
                label: src.label.clone(),
                path: path.display().to_string(),
                tree: Some(write_tree(sink, d, &mut results, &mut stats)?),
                file: None,
            },
            RootPlan::File(mut e, slot) => {
                if let Some(slot) = slot {
                    e.kind = EntryKind::File(results[slot].take().expect("ingested"));
                }
                if let EntryKind::File(c) = &e.kind {
                    stats.files += 1;
                    stats.logical_bytes += c.size;
                }
                SourceRoot {
                    label: src.label.clone(),
                    path: path.display().to_string(),
                    tree: None,
                    file: Some(e),
                }
            }
        };
        roots.push(root);
    }
    sink.finish()?;
    let c = &sink.counters;
    stats.new_chunks = c.new_chunks.load(Ordering::Relaxed);
    stats.new_data_bytes = c.new_data_bytes.load(Ordering::Relaxed);
    stats.new_meta_bytes = c.new_meta_bytes.load(Ordering::Relaxed);
    stats.added_pack_bytes = c.pack_bytes.load(Ordering::Relaxed);
    stats.new_packs = c.packs.load(Ordering::Relaxed);
    let manifest = Manifest {
        id,
        parent: parent.map(|p| p.id),
        hostname: hostname(),
        cairn_version: env!("CARGO_PKG_VERSION").to_string(),
        finished_unix: now_unix(),
        roots,
        stats,
        labels: opts.labels.clone(),
    };
    store.write_manifest(&manifest)?;
    let manifest_len = manifest.encode().what("manifest")?.len() as u64;
    Ok(SnapshotReport {
        store_growth: manifest.stats.added_pack_bytes + manifest_len,
        manifest,
        warnings: walker.warnings,
    })
}

fn placeholder() -> FileContent {
    FileContent {
        size: 0,
        hash: [0; 32],
        layout: cairn_format::ContentLayout::Whole,
        chunks: cairn_format::ChunkList::Inline(Vec::new()),
    }
}

fn write_tree(
    sink: &ChunkSink<'_>,
    dir: DirPlan,
    results: &mut [Option<FileContent>],
    stats: &mut SnapshotStats,
) -> Result<cairn_format::ChunkId> {
    stats.dirs += 1;
    let mut node = TreeNode::default();
    for e in dir.entries {
        let kind = match e.item {
            ItemPlan::Reuse(c) => EntryKind::File(c),
            ItemPlan::Read { slot } => EntryKind::File(results[slot].take().expect("ingested")),
            ItemPlan::Dir(d) => EntryKind::Dir(write_tree(sink, d, results, stats)?),
            ItemPlan::Symlink(t) => EntryKind::Symlink(t),
        };
        if let EntryKind::File(c) = &kind {
            stats.files += 1;
            stats.logical_bytes += c.size;
        }
        node.entries.push(TreeEntry {
            name: e.name,
            meta: e.meta,
            kind,
        });
    }
    let _ = dir.meta;
    sink.put_meta(node.encode().what("tree node")?)
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
