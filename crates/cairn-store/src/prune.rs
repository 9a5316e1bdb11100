//! `cairn prune`: mark and sweep. Deletes packs no snapshot needs and
//! rewrites packs that are mostly dead, while snapshots keep running.
//!
//! # Protocol
//!
//! Packs and manifests are immutable, so most of a prune needs no lock:
//!
//! 1. **Plan** (no store lock; `STORE/prune.lock` keeps prunes one at a
//!    time). Read every pack trailer into a [`Catalog`] (chunk id → its
//!    *home*: the first pack, in id order, that holds it; other copies are
//!    dead), list the manifests, and mark every chunk reachable from them
//!    (tree nodes, chunk-list nodes, data chunks), reading metadata through
//!    the catalog. Each pack is then kept, deleted (nothing live) or
//!    rewritten (more than `max_unused` of it dead).
//! 2. **Copy** (no store lock). Live chunks of the packs to rewrite are
//!    copied into new packs: frames whose chunks are all live are copied
//!    as they are, others are re-encoded with only their live chunks;
//!    every copied chunk is verified against its id first. New packs are
//!    written under `STORE/prune-tmp/`, fsynced and renamed into `packs/`
//!    (then the directory is fsynced), so they are durable before anything
//!    is deleted. A snapshot running meanwhile simply indexes them when it
//!    opens the store; they only duplicate chunks.
//! 3. **Sweep** (store lock, held only for this step). Manifests written
//!    since the plan are marked too, through the index; any planned pack
//!    holding a chunk they need is spared (kept as it is). Then, in this
//!    order: whole-file dedup records are dropped (they may name deleted
//!    chunks), the doomed packs are removed from the index and every pack
//!    sharing a live chunk with them is indexed again (so each live chunk
//!    stays indexed at a surviving copy), the index is flushed, and only
//!    then are the pack files deleted and `packs/` fsynced.
//!
//! A snapshot that deduplicated against a chunk during steps 1–2 has
//! finished (or died) by step 3, since it held the store lock; its manifest
//! is marked in step 3, so the packs it needs survive. A kill at any point
//! leaves every snapshot restorable: before step 3 nothing is deleted;
//! during it, the index never names a deleted pack (a pack still on disk
//! but no longer indexed is indexed again by the next open, and swept by
//! the next prune).

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use cairn_format::pack::{self, BlobKind, FrameChunk, PackBuilder, PackEntry};
use cairn_format::{ChunkId, Manifest, PackId, SnapshotId};

use crate::atomic;
use crate::error::{FormatContext, IoContext, Result, StoreError};
use crate::files::StoreFiles;
use crate::lock::LockOptions;
pub use crate::mark::{Catalog, LiveSet};
use crate::packer::seal_pack;
use crate::reader::ChunkReader;
use crate::store::Store;

/// Name of the file whose flock keeps prunes (and purges) one at a time.
pub const PRUNE_LOCK: &str = "prune.lock";
/// Where prune writes its new packs before renaming them into `packs/`.
pub const PRUNE_TMP: &str = "prune-tmp";

/// How much dead data to tolerate and how much to copy.
#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// A pack with more than this percentage of its bytes dead is
    /// rewritten (0 rewrites every pack with a dead chunk).
    pub max_unused_percent: f64,
    /// At most this many live bytes are copied by rewrites (packs with the
    /// most dead bytes go first); fully dead packs are always deleted.
    pub max_repack_bytes: Option<u64>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        Self {
            max_unused_percent: 5.0,
            max_repack_bytes: None,
        }
    }
}

/// What happens to a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackAction {
    /// Left as it is.
    Keep,
    /// Nothing in it is live: deleted.
    Delete,
    /// Its live chunks are copied to new packs, then it is deleted.
    Rewrite,
}

/// How one pack is used.
#[derive(Clone, Debug)]
pub struct PackUsage {
    /// The pack.
    pub pack: PackId,
    /// Its size on disk.
    pub len: u64,
    /// Live chunks (at their home copy).
    pub live_chunks: u64,
    /// Dead chunks (unreferenced, or a copy of a chunk whose home is elsewhere).
    pub dead_chunks: u64,
    /// Stored bytes of its live chunks (each chunk's share of its frame).
    pub live_bytes: u64,
    /// Stored bytes of its dead chunks.
    pub dead_bytes: u64,
    /// What prune does with it.
    pub action: PackAction,
}

/// The prune plan: what each pack becomes.
pub struct PrunePlan {
    /// The snapshots whose chunks were marked, with a digest of each
    /// manifest (a later manifest under a reused id counts as new).
    pub snapshots: BTreeMap<SnapshotId, [u8; 32]>,
    /// Every pack, with its use and action.
    pub packs: Vec<PackUsage>,
    catalog: Catalog,
    live: LiveSet,
}

impl PrunePlan {
    /// Bytes of the packs deleted outright.
    pub fn delete_bytes(&self) -> u64 {
        self.sum(PackAction::Delete, |p| p.len)
    }
    /// Bytes of the packs rewritten (before).
    pub fn rewrite_bytes(&self) -> u64 {
        self.sum(PackAction::Rewrite, |p| p.len)
    }
    /// Live bytes the rewrites copy.
    pub fn copy_bytes(&self) -> u64 {
        self.sum(PackAction::Rewrite, |p| p.live_bytes)
    }
    /// Bytes the prune is expected to free (deleted packs, and the dead
    /// part of rewritten ones).
    pub fn expected_freed(&self) -> u64 {
        self.delete_bytes() + self.rewrite_bytes() - self.copy_bytes()
    }
    /// Dead bytes left in kept packs.
    pub fn unused_after(&self) -> u64 {
        self.sum(PackAction::Keep, |p| p.dead_bytes)
    }
    /// Dead bytes in the whole store now.
    pub fn unused_now(&self) -> u64 {
        self.packs.iter().map(|p| p.dead_bytes).sum::<u64>()
            + self
                .packs
                .iter()
                .filter(|p| p.live_chunks == 0)
                .map(|p| p.len - p.dead_bytes)
                .sum::<u64>()
    }
    /// Number of packs with `action`.
    pub fn count(&self, action: PackAction) -> usize {
        self.packs.iter().filter(|p| p.action == action).count()
    }
    /// The set of live chunks.
    pub fn live(&self) -> &HashSet<ChunkId> {
        &self.live.chunks
    }
    /// Every chunk some pack holds that no snapshot references, with its
    /// pack.
    pub fn unreferenced(&self) -> Vec<(PackId, ChunkId)> {
        self.catalog
            .packs
            .iter()
            .flat_map(|(pack, _, entries)| entries.iter().map(move |e| (*pack, e.id)))
            .filter(|(_, id)| !self.live.chunks.contains(id))
            .collect()
    }
    fn sum(&self, action: PackAction, f: impl Fn(&PackUsage) -> u64) -> u64 {
        self.packs
            .iter()
            .filter(|p| p.action == action)
            .map(f)
            .sum()
    }
}

/// Stored bytes of each entry: its share of its frame by raw length.
fn entry_shares(entries: &[PackEntry]) -> Vec<u64> {
    let mut out = vec![0u64; entries.len()];
    let mut start = 0;
    while start < entries.len() {
        let off = entries[start].frame_offset;
        let end = start
            + entries[start..]
                .iter()
                .take_while(|e| e.frame_offset == off)
                .count();
        let raw: u64 = entries[start..end].iter().map(|e| u64::from(e.len)).sum();
        let frame = u64::from(entries[start].frame_len);
        let even = frame / (end - start) as u64;
        for (share, e) in out[start..end].iter_mut().zip(&entries[start..end]) {
            *share = (frame * u64::from(e.len)).checked_div(raw).unwrap_or(even);
        }
        start = end;
    }
    out
}

/// Plans a prune of the store at `files` (no store lock needed).
pub fn plan(files: &StoreFiles, opts: &PruneOptions) -> Result<PrunePlan> {
    // Manifests first: one written after this listing is marked in the
    // sweep, while every pack a listed one needs is already on disk.
    let ids = files.manifest_ids()?;
    let catalog = Catalog::read(files)?;
    let mut live = LiveSet::default();
    let mut snapshots = BTreeMap::new();
    {
        let reader = ChunkReader::with_locator(files, &catalog);
        for id in ids {
            let m = match files.load_manifest(id) {
                Ok(m) => m,
                // Forgotten since it was listed.
                Err(StoreError::UnknownSnapshot { .. }) => continue,
                Err(e) => return Err(e),
            };
            live.mark(&reader, &m).map_err(|e| stopped(id, e))?;
            snapshots.insert(id, manifest_digest(&m)?);
        }
    }
    let mut packs = Vec::new();
    for (p, (pack, len, entries)) in catalog.packs.iter().enumerate() {
        let shares = entry_shares(entries);
        let mut u = PackUsage {
            pack: *pack,
            len: *len,
            live_chunks: 0,
            dead_chunks: 0,
            live_bytes: 0,
            dead_bytes: 0,
            action: PackAction::Keep,
        };
        for (i, e) in entries.iter().enumerate() {
            if live.chunks.contains(&e.id) && catalog.is_home(p, i, &e.id) {
                u.live_chunks += 1;
                u.live_bytes += shares[i];
            } else {
                u.dead_chunks += 1;
                u.dead_bytes += shares[i];
            }
        }
        packs.push(u);
    }
    choose_actions(&mut packs, opts);
    Ok(PrunePlan {
        snapshots,
        packs,
        catalog,
        live,
    })
}

fn manifest_digest(m: &Manifest) -> Result<[u8; 32]> {
    let bytes = m.encode().what(format!("snapshot {}", m.id))?;
    Ok(*blake3::hash(&bytes).as_bytes())
}

fn stopped(id: SnapshotId, e: StoreError) -> StoreError {
    StoreError::Usage(format!(
        "prune stopped: snapshot {id} cannot be read in full ({e}); nothing was deleted (run `cairn check`)"
    ))
}

fn choose_actions(packs: &mut [PackUsage], opts: &PruneOptions) {
    let mut candidates = Vec::new();
    for (i, p) in packs.iter_mut().enumerate() {
        if p.live_chunks == 0 {
            p.action = PackAction::Delete;
        } else if p.dead_chunks > 0
            && p.dead_bytes as f64 * 100.0 > opts.max_unused_percent * p.len as f64
        {
            candidates.push(i);
        }
    }
    candidates.sort_by_key(|i| std::cmp::Reverse(packs[*i].dead_bytes));
    let mut budget = opts.max_repack_bytes.unwrap_or(u64::MAX);
    for i in candidates {
        if packs[i].live_bytes <= budget {
            budget -= packs[i].live_bytes;
            packs[i].action = PackAction::Rewrite;
        }
    }
}

/// What a prune did.
#[derive(Clone, Debug, Default)]
pub struct PruneReport {
    /// Packs deleted (wholly dead, or rewritten).
    pub packs_deleted: Vec<PackId>,
    /// New packs written by rewrites.
    pub packs_written: Vec<PackId>,
    /// Planned deletions called off because a snapshot taken during the
    /// prune needs a chunk in them.
    pub packs_spared: Vec<PackId>,
    /// Snapshots taken while the prune ran (marked in the sweep).
    pub late_snapshots: Vec<SnapshotId>,
    /// Bytes of packs before and after.
    pub pack_bytes_before: u64,
    /// Bytes of packs after.
    pub pack_bytes_after: u64,
}

/// Writes rewritten packs of one kind.
struct PackRewriter<'a> {
    files: &'a StoreFiles,
    tmp: &'a Path,
    open: Option<(PackBuilder<BufWriter<File>>, PathBuf)>,
    written: Vec<PackId>,
}

impl PackRewriter<'_> {
    fn add(&mut self, frame: &[u8], chunks: &[FrameChunk]) -> Result<()> {
        if self.open.is_none() {
            let (f, temp) = atomic::create_temp(self.tmp, "repack")?;
            let b = PackBuilder::new(BufWriter::with_capacity(1 << 20, f)).at(&temp)?;
            self.open = Some((b, temp));
        }
        let (b, temp) = self.open.as_mut().expect("opened");
        b.add_frame(frame, chunks).at(&*temp)?;
        if b.len() >= self.files.config().pack_target {
            self.seal()?;
        }
        Ok(())
    }

    fn seal(&mut self) -> Result<()> {
        let Some((b, temp)) = self.open.take() else {
            return Ok(());
        };
        let (id, ..) = seal_pack(self.files, b, &temp)?;
        self.written.push(id);
        Ok(())
    }
}

/// Copies the live chunks of the packs to rewrite into new packs
/// (step 2; no store lock). Returns the new packs.
fn rewrite(files: &StoreFiles, plan: &PrunePlan) -> Result<Vec<PackId>> {
    let tmp = files.root().join(PRUNE_TMP);
    let level = files.config().compression.zstd_level;
    let mut data = PackRewriter {
        files,
        tmp: &tmp,
        open: None,
        written: Vec::new(),
    };
    let mut meta = PackRewriter {
        files,
        tmp: &tmp,
        open: None,
        written: Vec::new(),
    };
    for (p, (pack, _, entries)) in plan.catalog.packs.iter().enumerate() {
        if plan.packs[p].action != PackAction::Rewrite {
            continue;
        }
        let bytes = files.read_pack(pack)?;
        let damaged = |detail: String| {
            StoreError::Usage(format!(
                "prune stopped: pack {pack} is damaged ({detail}); nothing was deleted (run `cairn repair`)"
            ))
        };
        let mut start = 0;
        while start < entries.len() {
            let f = entries[start];
            let end = start
                + entries[start..]
                    .iter()
                    .take_while(|e| e.frame_offset == f.frame_offset)
                    .count();
            let frame_entries = &entries[start..end];
            let keep: Vec<usize> = (start..end)
                .filter(|i| {
                    let id = &entries[*i].id;
                    plan.live.chunks.contains(id) && plan.catalog.is_home(p, *i, id)
                })
                .collect();
            start = end;
            if keep.is_empty() {
                continue;
            }
            let encoded = bytes
                .get(f.frame_offset as usize..(f.frame_offset + u64::from(f.frame_len)) as usize)
                .ok_or_else(|| damaged("frame outside the pack".into()))?;
            let raw = pack::decode_frame(encoded).map_err(|e| damaged(e.to_string()))?;
            let mut chunks: Vec<FrameChunk> = Vec::new();
            let mut kept_raw = Vec::new();
            for i in &keep {
                let e = &entries[*i];
                let c = pack::chunk_in_frame(&raw, e).map_err(|e| damaged(e.to_string()))?;
                if ChunkId::of(c) != e.id {
                    return Err(damaged(format!(
                        "chunk {} does not match its id",
                        e.id.short()
                    )));
                }
                chunks.push((e.id, e.kind, e.len));
                kept_raw.extend_from_slice(c);
            }
            let out = if f.kind == BlobKind::Meta {
                &mut meta
            } else {
                &mut data
            };
            if keep.len() == frame_entries.len() {
                out.add(encoded, &chunks)?;
            } else {
                let frame = pack::encode_frame(&kept_raw, level).what("rewritten frame")?;
                out.add(&frame, &chunks)?;
            }
        }
    }
    data.seal()?;
    meta.seal()?;
    let mut written = data.written;
    written.extend(meta.written);
    Ok(written)
}

/// Takes `STORE/prune.lock` (one prune or purge at a time) and clears
/// `STORE/prune-tmp`. The lock is held while the returned file is open.
pub fn prune_lock(files: &StoreFiles) -> Result<File> {
    let f = hold_prune_lock(files, "another prune or purge is running")?;
    let tmp = files.root().join(PRUNE_TMP);
    if tmp.exists() {
        fs::remove_dir_all(&tmp).at(&tmp)?;
    }
    fs::create_dir_all(&tmp).at(&tmp)?;
    Ok(f)
}

/// Takes `STORE/prune.lock` so no pack is pruned away while it is held
/// (replicate holds it while it sends packs); `busy` says why it is taken
/// when it cannot be.
pub fn hold_prune_lock(files: &StoreFiles, busy: &str) -> Result<File> {
    let path = files.root().join(PRUNE_LOCK);
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .at(&path)?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(fs::TryLockError::WouldBlock) => Err(StoreError::Usage(format!(
            "{busy} on {} (it holds {})",
            files.root().display(),
            path.display()
        ))),
        Err(fs::TryLockError::Error(e)) => Err(e).at(&path),
    }
}

/// Executes `plan` on a remote store, whose lock `_lock` was held since
/// before the plan, so no snapshot can have been added meanwhile (every
/// writer of a remote store takes that lock): live chunks of the packs to
/// rewrite are copied into new packs, uploaded, and only then are the
/// doomed packs deleted. The cache index is brought in step by the next
/// open. A kill leaves at worst new packs that duplicate chunks, or
/// doomed packs not yet deleted; the next prune handles both.
pub fn execute_remote(
    files: &StoreFiles,
    plan: &PrunePlan,
    lock: &crate::lock::RemoteLock,
) -> Result<PruneReport> {
    files.require_writable("prune")?;
    let Some(b) = files.remote() else {
        return Err(StoreError::Usage(
            "execute_remote needs a remote store".into(),
        ));
    };
    let mut report = PruneReport {
        pack_bytes_before: files.pack_files()?.values().sum(),
        ..PruneReport::default()
    };
    report.packs_written = rewrite(files, plan)?;
    crate::gate::pause_point("prune-before-sweep");
    // Before anything is deleted: the lock is still ours and no snapshot
    // came or went (a lock broken by `cairn unlock` while this ran would
    // let a replication in).
    let unchanged = files.manifest_ids()?.iter().eq(plan.snapshots.keys());
    if !lock.still_held()? || !unchanged {
        return Err(StoreError::Usage(format!(
            "prune stopped: the lock of {} was lost or its snapshots changed while the prune ran; nothing was deleted (run it again)",
            files.location()
        )));
    }
    let written: HashSet<PackId> = report.packs_written.iter().copied().collect();
    for (p, (pack, _, _)) in plan.catalog.packs.iter().enumerate() {
        if plan.packs[p].action == PackAction::Keep || written.contains(pack) {
            continue;
        }
        b.delete(&crate::files::pack_name(pack))?;
        report.packs_deleted.push(*pack);
    }
    report.pack_bytes_after = files.pack_files()?.values().sum();
    Ok(report)
}

/// Executes `plan` (steps 2 and 3), taking the store lock for the sweep
/// as `lock` says. The caller holds [`prune_lock`].
pub fn execute(files: &StoreFiles, plan: &PrunePlan, lock: &LockOptions) -> Result<PruneReport> {
    files.require_local("prune")?;
    let mut report = PruneReport {
        pack_bytes_before: files.pack_files()?.values().sum(),
        ..PruneReport::default()
    };
    report.packs_written = rewrite(files, plan)?;
    crate::gate::pause_point("prune-before-sweep");
    let store = Store::open_with(files.root(), lock)?;
    sweep(&store, plan, &mut report)?;
    report.pack_bytes_after = store.pack_files()?.values().sum();
    Ok(report)
}

/// Step 3, under the store lock.
fn sweep(store: &Store, plan: &PrunePlan, report: &mut PruneReport) -> Result<()> {
    // Snapshots taken since the plan: mark what they need.
    let mut late_live = LiveSet {
        chunks: HashSet::new(),
        expanded: plan.live.expanded.clone(),
    };
    let reader = ChunkReader::new(store);
    for id in store.manifest_ids()? {
        let m = store.load_manifest(id)?;
        if plan.snapshots.get(&id) == Some(&manifest_digest(&m)?) {
            continue;
        }
        late_live.mark(&reader, &m).map_err(|e| stopped(id, e))?;
        report.late_snapshots.push(id);
    }
    let mut doomed: Vec<usize> = Vec::new();
    let written: HashSet<PackId> = report.packs_written.iter().copied().collect();
    for (p, (pack, _, entries)) in plan.catalog.packs.iter().enumerate() {
        // A rewrite can produce a pack that exists already, byte for byte
        // (an earlier, interrupted prune wrote it): it is kept.
        if plan.packs[p].action == PackAction::Keep || written.contains(pack) {
            continue;
        }
        // A chunk live at plan time is kept anyway (at its home, or copied
        // to a new pack); only chunks that were dead then spare a pack.
        if entries
            .iter()
            .any(|e| late_live.chunks.contains(&e.id) && !plan.live.chunks.contains(&e.id))
        {
            report.packs_spared.push(*pack);
        } else {
            doomed.push(p);
        }
    }
    if doomed.is_empty() {
        return Ok(());
    }
    let index = store.index();
    index.forget_files()?;
    index.flush()?;
    // A live chunk that a doomed pack shares with a surviving one stays
    // indexed through the survivor: the index keeps each pack's entries.
    for p in &doomed {
        index.remove_pack(plan.catalog.packs[*p].0)?;
    }
    index.flush()?;
    for p in &doomed {
        let pack = plan.catalog.packs[*p].0;
        let path = store.pack_path(&pack);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).at(&path),
        }
        report.packs_deleted.push(pack);
    }
    atomic::sync_dir(&store.root().join("packs"))?;
    Ok(())
}
