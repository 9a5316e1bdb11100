//! Restore: plan (walk the snapshot's trees, check every name) then
//! execute (directories, files in parallel, symlinks, directory times).
//!
//! Every chunk is checked against its id as it is read and every file
//! against its whole-file hash before it is renamed into place from a
//! temp name in the same directory, so a damaged file never appears under
//! its real name. Names are single path components (no `/`, `..`, `.`),
//! directories are created by the restore itself and checked not to be
//! symlinks, and symlinks are created last, so no write can leave the
//! target.

use std::collections::HashMap;
use std::fs::{self, File, FileTimes, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use rayon::prelude::*;

use cairn_format::{
    ChunkId, ChunkListHasher, EntryClass, EntryKind, EntryMeta, FileContent, Manifest, SnapshotId,
};

use crate::atomic;
use crate::delta;
use crate::error::{IoContext, Result, StoreError};
use crate::holes::HoleWriter;
use crate::reader::{ChunkReader, FrameCache};
use crate::snapshot::Progress;
use crate::store::Store;
use crate::sync_threads::{Completion, Outcome, SyncThreads};
use crate::tree::{for_each_chunk, load_tree};
use crate::writeback::Writeback;

/// What to restore where.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// The snapshot.
    pub snapshot: SnapshotId,
    /// The directory to restore into.
    pub target: PathBuf,
    /// Allow a non-empty target (existing files of the same name are replaced).
    pub overwrite: bool,
    /// Whether restored files and directories are fsynced.
    pub durability: Durability,
}

/// Whether a restore waits for its files to reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Every restored file and directory is fsynced before the restore
    /// reports success (the default: a restore may be all that is left).
    Synced,
    /// Nothing is fsynced: for a target that is thrown away (a drill, a
    /// test), where waiting for the disk buys nothing. A crash may leave
    /// restored files short or empty.
    Unsynced,
}

/// A file to restore.
#[derive(Clone, Debug)]
pub struct PlannedFile {
    /// Path relative to the target.
    pub rel: PathBuf,
    /// Metadata to restore.
    pub meta: EntryMeta,
    /// Content.
    pub content: FileContent,
    /// What the file is to HitKeep.
    pub class: EntryClass,
    /// Label of the root it belongs to.
    pub root: String,
}

/// Everything a restore will write, checked before anything is written.
#[derive(Clone, Debug, Default)]
pub struct RestorePlan {
    /// Directories, parents first, with their metadata.
    pub dirs: Vec<(PathBuf, Option<EntryMeta>)>,
    /// Regular files.
    pub files: Vec<PlannedFile>,
    /// Symlinks and their targets.
    pub symlinks: Vec<(PathBuf, Vec<u8>, EntryMeta)>,
    /// Total bytes of file content.
    pub bytes: u64,
    /// Directories whose tree node could not be read: nothing under them
    /// can be restored; everything else can.
    pub failed: Vec<(PathBuf, String)>,
}

/// What a restore did.
#[derive(Clone, Debug, Default)]
pub struct RestoreReport {
    /// Files restored and verified.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Files that could not be restored, with the reason.
    pub failed: Vec<(PathBuf, String)>,
}

/// Walks a snapshot into a restore plan, refusing unsafe names. With more
/// than one root, each root goes under a directory named by its label.
pub fn plan(store: &Store, manifest: &Manifest) -> Result<RestorePlan> {
    let reader = ChunkReader::new(store);
    let mut cache = FrameCache::default();
    let mut plan = RestorePlan::default();
    let several = manifest.roots.len() > 1;
    for root in &manifest.roots {
        let base = if several {
            let label = root.label.as_bytes();
            if label.is_empty() || label.contains(&b'/') || label == b".." || label == b"." {
                return Err(StoreError::UnsafePath {
                    detail: format!("root label {:?}", root.label),
                });
            }
            plan.dirs.push((PathBuf::from(&root.label), None));
            PathBuf::from(&root.label)
        } else {
            PathBuf::new()
        };
        if let Some(tree) = root.tree {
            walk_plan(&reader, &mut cache, &root.label, &tree, &base, &mut plan)?;
        }
        if let Some(entry) = &root.file {
            let name = entry.safe_name().map_err(|e| StoreError::UnsafePath {
                detail: e.to_string(),
            })?;
            add_entry(
                &reader,
                &mut cache,
                &root.label,
                base.join(std::ffi::OsStr::from_bytes(name)),
                entry,
                &mut plan,
            )?;
        }
    }
    Ok(plan)
}

fn walk_plan(
    reader: &ChunkReader<'_>,
    cache: &mut FrameCache,
    root: &str,
    tree: &ChunkId,
    rel: &Path,
    plan: &mut RestorePlan,
) -> Result<()> {
    let ctx = || format!("directory {:?}", rel.display().to_string());
    let node = match load_tree(reader, tree, cache, &ctx) {
        Ok(n) => n,
        Err(e) => {
            // A damaged or missing directory node loses that directory,
            // not the snapshot.
            let shown = if rel.as_os_str().is_empty() {
                PathBuf::from("./")
            } else {
                PathBuf::from(format!("{}/", rel.display()))
            };
            plan.failed.push((shown, e.to_string()));
            return Ok(());
        }
    };
    for e in &node.entries {
        let name = e.safe_name().map_err(|err| StoreError::UnsafePath {
            detail: format!("{err} in {}", ctx()),
        })?;
        add_entry(
            reader,
            cache,
            root,
            rel.join(std::ffi::OsStr::from_bytes(name)),
            e,
            plan,
        )?;
    }
    Ok(())
}

fn add_entry(
    reader: &ChunkReader<'_>,
    cache: &mut FrameCache,
    root: &str,
    rel: PathBuf,
    e: &cairn_format::TreeEntry,
    plan: &mut RestorePlan,
) -> Result<()> {
    match &e.kind {
        EntryKind::File(c) => {
            plan.bytes += c.size;
            plan.files.push(PlannedFile {
                rel,
                meta: e.meta.clone(),
                content: c.clone(),
                class: e.class.clone(),
                root: root.to_string(),
            });
        }
        EntryKind::Dir(id) => {
            plan.dirs.push((rel.clone(), Some(e.meta.clone())));
            walk_plan(reader, cache, root, id, &rel, plan)?;
        }
        EntryKind::Symlink(t) => plan.symlinks.push((rel, t.clone(), e.meta.clone())),
    }
    Ok(())
}

/// Restores a snapshot: plans, checks the target, then writes.
pub fn restore(
    store: &Store,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    let manifest = store.load_manifest(opts.snapshot)?;
    let plan = plan(store, &manifest)?;
    let target = &opts.target;
    store.refuse_inside("restore target", target)?;
    // The target itself may be a symlink to a directory (what is restored
    // under it never follows one).
    match fs::metadata(target) {
        Ok(m) if !m.is_dir() => {
            return Err(StoreError::Usage(format!(
                "restore target {} exists and is not a directory",
                target.display()
            )))
        }
        Ok(_) => {
            let non_empty = fs::read_dir(target).at(target)?.next().is_some();
            if non_empty && !opts.overwrite {
                return Err(StoreError::TargetNotEmpty {
                    path: target.clone(),
                });
            }
        }
        Err(e) if fs::symlink_metadata(target).is_ok() => {
            return Err(StoreError::Usage(format!(
                "restore target {} is a symlink to nothing usable ({e})",
                target.display()
            )))
        }
        Err(_) => fs::create_dir_all(target).at(target)?,
    }
    let target = fs::canonicalize(target).at(target)?;
    store.refuse_inside("restore target", &target)?;
    execute(store, &plan, &target, opts.durability, progress)
}

/// Refuses, before anything is written, a snapshot that puts two kinds of
/// entry at one path (roots merged under one label), a restore over a
/// target that holds something of another kind where the snapshot puts a
/// directory, file or symlink (only a `--overwrite` restore meets one),
/// and one that would write into the store where the target holds it (a
/// snapshot of a tree that held another store at the same place, or the
/// store seen there through a bind mount): every parent of a planned path
/// is a planned directory, so the store is met as one of them.
fn refuse_conflicts(store: &Store, plan: &RestorePlan, target: &Path) -> Result<()> {
    let is_store = store.store_dir_test();
    let dirs = plan.dirs.iter().map(|(rel, _)| (rel, PathKind::Directory));
    let files = plan.files.iter().map(|f| (&f.rel, PathKind::File));
    let links = plan
        .symlinks
        .iter()
        .map(|(rel, _, _)| (rel, PathKind::Symlink));
    let mut kinds: HashMap<&Path, PathKind> = HashMap::new();
    for (rel, wanted) in dirs.chain(files).chain(links) {
        match kinds.insert(rel, wanted) {
            Some(other) if other != wanted => {
                return Err(StoreError::UnsafePath {
                    detail: format!("{} is both a {other} and a {wanted}", rel.display()),
                })
            }
            _ => {}
        }
        let path = target.join(rel);
        if let Ok(m) = fs::symlink_metadata(&path) {
            refuse_kind(&path, &m, wanted)?;
            if m.is_dir() && is_store(&m) {
                return Err(StoreError::InsideStore {
                    what: "snapshot path".into(),
                    path,
                    store: store.files().store_dir().to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// What a path is, for a restore meeting something in its way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// A directory.
    Directory,
    /// A regular file.
    File,
    /// A symlink.
    Symlink,
    /// A device, FIFO or socket.
    Special,
}

impl PathKind {
    fn of(meta: &fs::Metadata) -> Self {
        let t = meta.file_type();
        if t.is_dir() {
            Self::Directory
        } else if t.is_symlink() {
            Self::Symlink
        } else if t.is_file() {
            Self::File
        } else {
            Self::Special
        }
    }
}

impl std::fmt::Display for PathKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Directory => "directory",
            Self::File => "file",
            Self::Symlink => "symlink",
            Self::Special => "special file",
        })
    }
}

/// Refuses what is at `path` (its metadata `found`) where a `wanted`
/// goes: a directory only on a real directory (never through a symlink),
/// a file or symlink anywhere but on a directory (it is replaced).
fn refuse_kind(path: &Path, found: &fs::Metadata, wanted: PathKind) -> Result<()> {
    let found = PathKind::of(found);
    let fits = match wanted {
        PathKind::Directory => found == PathKind::Directory,
        _ => found != PathKind::Directory,
    };
    if fits {
        return Ok(());
    }
    Err(StoreError::TargetConflict {
        path: path.to_path_buf(),
        found,
        wanted,
    })
}

/// Creates `dir` unless it exists as a real directory; a symlink or file
/// in its place is refused.
fn ensure_dir(dir: &Path) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) => refuse_kind(dir, &m, PathKind::Directory),
        Err(_) => fs::create_dir(dir).at(dir),
    }
}

fn set_mtime(f: &File, meta: &EntryMeta) -> std::io::Result<()> {
    let t = if meta.mtime_ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(meta.mtime_ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(meta.mtime_ns.unsigned_abs())
    };
    f.set_times(FileTimes::new().set_modified(t))
}

/// Writes a plan into `target`, which exists.
pub fn execute(
    store: &Store,
    plan: &RestorePlan,
    target: &Path,
    durability: Durability,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    store.refuse_inside("restore target", target)?;
    refuse_conflicts(store, plan, target)?;
    progress.start(plan.files.len() as u64, plan.bytes);
    for (rel, _) in &plan.dirs {
        ensure_dir(&target.join(rel))?;
    }
    let reader = ChunkReader::new(store);
    // Largest first, so the last file to finish is a small one.
    let mut order: Vec<usize> = (0..plan.files.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(plan.files[i].content.size));
    let outcomes = std::thread::scope(|scope| -> Result<_> {
        // A durable restore hands each staged file to the sync threads,
        // so the restoring threads decode the next file while the disk
        // writes this one (and several fsyncs share a journal commit).
        let syncs = match durability {
            Durability::Synced => Some(SyncThreads::start(scope, progress)?),
            Durability::Unsynced => None,
        };
        let restore_all = || -> Vec<Outcome> {
            order
                .par_iter()
                .map_init(
                    || (FrameCache::default(), FrameCache::default()),
                    |(lists, data), &i| {
                        let f = &plan.files[i];
                        let r = restore_file(&reader, lists, data, f, target, durability, progress);
                        // A file counts as done once it is in place (and
                        // durable, when the restore is).
                        let outcome = match (r, &syncs) {
                            (Ok(placed), Some(syncs)) => return syncs.send(i, placed),
                            (Ok(placed), None) => (i, placed.complete().map_err(|e| e.to_string())),
                            (Err(e), _) => (i, Err(e.to_string())),
                        };
                        progress.file_done();
                        Some(outcome)
                    },
                )
                .flatten()
                .collect()
        };
        // From a remote store most files cost a request or two of latency
        // each: more files are restored at once than there are cores.
        let mut outcomes = match store.files().remote() {
            Some(_) => rayon::ThreadPoolBuilder::new()
                .num_threads(REMOTE_FILES_AT_ONCE)
                .thread_name(|i| format!("cairn-restore-{i}"))
                .build()
                .map_err(|e| StoreError::Usage(format!("cannot start restore threads: {e}")))?
                .install(restore_all),
            None => restore_all(),
        };
        if let Some(syncs) = syncs {
            syncs.finish(&mut outcomes, plan.files.len());
        }
        Ok(outcomes)
    })?;
    if durability == Durability::Synced {
        for (rel, _) in &plan.dirs {
            atomic::sync_dir(&target.join(rel))?;
        }
        atomic::sync_dir(target)?;
    }
    let mut report = RestoreReport {
        failed: plan.failed.clone(),
        ..RestoreReport::default()
    };
    for (i, r) in outcomes {
        match r {
            Ok(n) => {
                report.files += 1;
                report.bytes += n;
            }
            Err(e) => report.failed.push((plan.files[i].rel.clone(), e)),
        }
    }
    for (rel, link, _) in &plan.symlinks {
        let dest = target.join(rel);
        if let Ok(m) = fs::symlink_metadata(&dest) {
            refuse_kind(&dest, &m, PathKind::Symlink)?;
            fs::remove_file(&dest).at(&dest)?;
        }
        std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(link), &dest).at(&dest)?;
    }
    for (rel, meta) in plan.dirs.iter().rev() {
        let dir = target.join(rel);
        if let Some(meta) = meta {
            fs::set_permissions(&dir, fs::Permissions::from_mode(meta.mode & 0o7777)).at(&dir)?;
            if let Ok(f) = File::open(&dir) {
                let _ = set_mtime(&f, meta);
            }
        }
    }
    Ok(report)
}

/// Stages `f` under a temp name beside its destination (removed again on
/// error).
fn restore_file(
    reader: &ChunkReader<'_>,
    lists: &mut FrameCache,
    data: &mut FrameCache,
    f: &PlannedFile,
    target: &Path,
    durability: Durability,
    progress: &dyn Progress,
) -> Result<Placement> {
    let dest = target.join(&f.rel);
    let dir = dest.parent().unwrap_or(target);
    let name = f
        .rel
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    // `.NAME.cairn-restore.PID.RANDOM.tmp`: 48 bytes besides the name.
    let name = fit_name(name.as_bytes(), 48);
    let stem = format!(".{}.cairn-restore", String::from_utf8_lossy(&name));
    let temp = atomic::temp_path(dir, &stem);
    let mode = f.meta.mode & 0o7777;
    match stage_file(reader, (lists, data), f, &temp, mode, durability, progress) {
        Ok(staged) => Ok(Placement { temp, dest, staged }),
        Err(e) => {
            let _ = fs::remove_file(&temp);
            Err(e)
        }
    }
}

/// The longest file name (in bytes) Linux file systems take.
const NAME_MAX: usize = 255;

/// `name` cut so that it and `room` more bytes fit in [`NAME_MAX`], for a
/// temp or set-aside name made from a file's name. A cut name ends in `~`
/// and 16 hex digits of the whole name's hash, so names that share a
/// beginning stay apart; text is cut on a character boundary.
pub(crate) fn fit_name(name: &[u8], room: usize) -> Vec<u8> {
    if name.len() + room <= NAME_MAX {
        return name.to_vec();
    }
    let mut keep = NAME_MAX.saturating_sub(room + 17).min(name.len());
    if let Ok(text) = std::str::from_utf8(name) {
        while !text.is_char_boundary(keep) {
            keep -= 1;
        }
    }
    let mut out = name[..keep].to_vec();
    out.push(b'~');
    out.extend_from_slice(hex::encode(&blake3::hash(name).as_bytes()[..8]).as_bytes());
    out
}

/// A restored file under its temp name, on its way to its real name.
struct Placement {
    temp: PathBuf,
    dest: PathBuf,
    staged: StagedFile,
}

impl Completion for Placement {
    /// Makes the file durable (when the restore is) and renames it into
    /// place; on error the temp file is removed.
    fn complete(self) -> Result<u64> {
        let Placement { temp, dest, staged } = self;
        let result = (|| {
            let written = staged.make_durable().at(&temp)?;
            if let Ok(m) = fs::symlink_metadata(&dest) {
                refuse_kind(&dest, &m, PathKind::File)?;
            }
            fs::rename(&temp, &dest).at(&dest)?;
            Ok(written)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }
}

/// The longest all-zero page ([`ChunkId::of_zeros`]), to write zero pages from.
static ZERO_PAGE: [u8; 256 << 10] = [0; 256 << 10];

/// Raw bytes of a file restored from a local store per parallel step (two
/// such buffers per file being restored).
const RESTORE_WINDOW: usize = 4 << 20;

/// Chunks one task of a parallel step reads at least (neighbours share a
/// frame, which a task decodes once).
const CHUNKS_PER_TASK: usize = 64;

/// Files restored at once from a remote store.
const REMOTE_FILES_AT_ONCE: usize = 8;

/// Raw bytes of chunks fetched ahead at once from a remote store (per
/// restoring thread).
const PREFETCH_WINDOW: u64 = 4 << 20;

/// Writes `f`'s content to a new file at `temp`, checking every chunk
/// against its id and the whole content against the file hash, then sets
/// `mode` and the mtime. When `durability` asks, its writeback starts as it
/// is written and [`StagedFile::make_durable`] waits for the rest. On error
/// the caller removes `temp`.
pub(crate) fn stage_file(
    reader: &ChunkReader<'_>,
    (lists, data): (&mut FrameCache, &mut FrameCache),
    f: &PlannedFile,
    temp: &Path,
    mode: u32,
    durability: Durability,
    progress: &dyn Progress,
) -> Result<StagedFile> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(temp)
        .at(temp)?;
    // All-zero pages are left as holes (see `holes`).
    let mut out = HoleWriter::new(&file);
    // A durable restore writes a file back as it goes, so its fsync at the
    // end does not write it all while the restore waits.
    let mut writeback = match durability {
        Durability::Synced => Some(Writeback::new(file.try_clone().at(temp)?)),
        Durability::Unsynced => None,
    };
    // A listed DuckDB file is checked by its chunk list (each chunk is
    // verified against its id as it is read); any other by its bytes.
    let by_list = f.content.layout.hash_is_of_list();
    let mut hasher = blake3::Hasher::new();
    let mut listed = ChunkListHasher::default();
    let mut written = 0u64;
    let ctx = || f.rel.display().to_string();
    let mut write_err = None;
    // Writes chunk `id` of `len` bytes; an all-zero page is known by its
    // id alone, with no frame to fetch or decode.
    let mut write = |id: &ChunkId, len: u64, data: &mut FrameCache| {
        let mut emit = |bytes: &[u8]| {
            if !by_list {
                hasher.update(bytes);
            }
            written += bytes.len() as u64;
            progress.bytes(bytes.len() as u64);
            if let Err(e) = out.write_all(bytes) {
                write_err.get_or_insert(e);
            }
        };
        if ChunkId::of_zeros(len) == Some(*id) {
            emit(&ZERO_PAGE[..len as usize]);
            return Ok(());
        }
        reader.with_chunk(id, data, &ctx, emit)
    };
    if f.content.is_delta() {
        // A patch on a base (at most 64 MiB): rebuilt whole, every file
        // of its chain checked, then written; a few at a time, and without
        // rayon while the permit is held.
        let _permit = delta::MemoryPermit::rebuild();
        let bytes = delta::rebuild(reader, lists, &f.content, &ctx)?;
        hasher.update(&bytes);
        written += bytes.len() as u64;
        progress.bytes(bytes.len() as u64);
        out.write_all(&bytes).at(temp)?;
        if let Some(w) = writeback.as_mut() {
            w.maybe_start(written).at(temp)?;
        }
    } else if reader.fetches_ahead() {
        // A remote store: the file's chunks go in windows; each window is
        // fetched (in parallel ranges) while the one before is written.
        // All-zero pages are known by their ids and never fetched.
        let mut front = std::mem::take(data);
        let mut back = FrameCache::default();
        let (mut filling, mut ready) = (Vec::new(), Vec::new());
        let mut filled = 0u64;
        let mut step = |filling: &mut Vec<(ChunkId, u64)>,
                        ready: &mut Vec<(ChunkId, u64)>,
                        front: &mut FrameCache,
                        back: &mut FrameCache|
         -> Result<()> {
            let to_fetch: Vec<ChunkId> = filling
                .iter()
                .filter(|(id, len)| ChunkId::of_zeros(*len) != Some(*id))
                .map(|(id, _)| *id)
                .collect();
            let (fetched, wrote) = rayon::join(
                || reader.prefetch(&to_fetch, back, &ctx),
                || {
                    ready
                        .drain(..)
                        .try_for_each(|(id, len)| write(&id, len, front))
                },
            );
            fetched?;
            wrote?;
            std::mem::swap(front, back);
            std::mem::swap(ready, filling);
            Ok(())
        };
        for_each_chunk(reader, &f.content.chunks, lists, &ctx, &mut |child| {
            listed.push(&child.id, child.len);
            filling.push((child.id, child.len));
            filled += child.len;
            if filled >= PREFETCH_WINDOW {
                filled = 0;
                step(&mut filling, &mut ready, &mut front, &mut back)?;
            }
            Ok(())
        })?;
        // Fetch the last window while the one before is written, then
        // write the last.
        step(&mut filling, &mut ready, &mut front, &mut back)?;
        step(&mut filling, &mut ready, &mut front, &mut back)?;
        *data = front;
    } else {
        // A local store: the file goes in windows whose chunks are read,
        // decoded and checked in parallel, then hashed (in parallel too)
        // and written, so one large database is not restored on one core.
        // The next window is read while the one before is hashed and
        // written.
        let fill = |window: &[(ChunkId, usize)], buf: &mut Vec<u8>| -> Result<()> {
            let filled: usize = window.iter().map(|(_, len)| len).sum();
            // Exactly: a window is a little over RESTORE_WINDOW, and an
            // amortised doubling would reserve twice that per buffer.
            buf.reserve_exact(filled.saturating_sub(buf.len()));
            buf.resize(filled, 0);
            let mut parts = Vec::with_capacity(window.len());
            let mut rest = &mut buf[..];
            for (_, len) in window {
                let (part, tail) = rest.split_at_mut(*len);
                parts.push(part);
                rest = tail;
            }
            window
                .par_iter()
                .zip(parts)
                .with_min_len(CHUNKS_PER_TASK)
                .try_for_each_init(FrameCache::default, |cache, ((id, _), part)| {
                    // An all-zero page is known by its id alone: no frame
                    // to find and decode (and it is left as a hole).
                    if ChunkId::of_zeros(part.len() as u64) == Some(*id) {
                        part.fill(0);
                        return Ok(());
                    }
                    reader.with_chunk(id, cache, &ctx, |bytes| {
                        if bytes.len() != part.len() {
                            return Err(StoreError::FileHashMismatch {
                                path: f.rel.clone(),
                            });
                        }
                        part.copy_from_slice(bytes);
                        Ok(())
                    })?
                })
        };
        let mut drain = |buf: &[u8]| -> Result<()> {
            if !by_list {
                hasher.update_rayon(buf);
            }
            written += buf.len() as u64;
            progress.bytes(buf.len() as u64);
            out.write_all(buf).at(temp)?;
            match writeback.as_mut() {
                Some(w) => w.maybe_start(written).at(temp),
                None => Ok(()),
            }
        };
        let (mut filling, mut ready) = (Vec::new(), Vec::new());
        let mut window: Vec<(ChunkId, usize)> = Vec::new();
        let mut window_bytes = 0usize;
        let mut step = |window: &mut Vec<(ChunkId, usize)>| -> Result<()> {
            let (filled, drained) = rayon::join(|| fill(window, &mut filling), || drain(&ready));
            filled?;
            drained?;
            std::mem::swap(&mut filling, &mut ready);
            window.clear();
            Ok(())
        };
        for_each_chunk(reader, &f.content.chunks, lists, &ctx, &mut |child| {
            listed.push(&child.id, child.len);
            window.push((child.id, child.len as usize));
            window_bytes += child.len as usize;
            if window_bytes >= RESTORE_WINDOW {
                window_bytes = 0;
                step(&mut window)?;
            }
            Ok(())
        })?;
        step(&mut window)?;
        step(&mut window)?;
    }
    if let Some(e) = write_err {
        return Err(e).at(temp);
    }
    out.finish().at(temp)?;
    let hash = if by_list {
        listed.finalize()
    } else {
        *hasher.finalize().as_bytes()
    };
    if written != f.content.size || hash != f.content.hash {
        return Err(StoreError::FileHashMismatch {
            path: f.rel.clone(),
        });
    }
    file.set_permissions(fs::Permissions::from_mode(mode))
        .at(temp)?;
    set_mtime(&file, &f.meta).at(temp)?;
    Ok(StagedFile { written, writeback })
}

/// A file written and verified under its temp name.
pub(crate) struct StagedFile {
    written: u64,
    /// Present exactly when the restore is durable.
    writeback: Option<Writeback>,
}

impl StagedFile {
    /// Waits until the file is on disk when the restore is durable; the
    /// bytes written.
    pub fn make_durable(self) -> std::io::Result<u64> {
        if let Some(w) = self.writeback {
            w.sync_all()?;
        }
        Ok(self.written)
    }
}
