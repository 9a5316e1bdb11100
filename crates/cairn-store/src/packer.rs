//! The write end of the store: deduplicates chunks against the index and
//! this run's own new chunks, and appends new ones to packs.
//!
//! Data and metadata go to separate packs (so metadata can later be cached
//! or fetched apart). A pack is written to `STORE/tmp`, fsynced, renamed
//! to `packs/<id>.pack`, the directory fsynced, and only then its entries
//! are indexed: the index never names a chunk whose pack is not durable.
//! The fsync of a full pack of a local store runs on a thread of its own
//! while the next pack fills (it took a quarter of a first snapshot's
//! wall time when it ran in line); the rename and the indexing follow
//! once it is done, in pack order, and the run's own chunks stay
//! deduplicated meanwhile through the set of claimed ids. While a local
//! pack fills, its bytes are written back early ([`Writeback`]), so the
//! disk writes the pack while the run computes instead of all at the seal.

use std::collections::{HashSet, VecDeque};
use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use cairn_format::pack::{self, BlobKind, FrameChunk, PackBuilder, PackTrailer};
use cairn_format::{ChunkId, ChunkList, FileContent, PackId};

use crate::atomic;
use crate::error::{FormatContext, IoContext, Result};
use crate::files::StoreFiles;
use crate::store::Store;
use crate::writeback::Writeback;

struct OpenPack {
    builder: PackBuilder<BufWriter<File>>,
    temp: PathBuf,
    ids: Vec<ChunkId>,
    /// Early writeback of the pack file (local stores only).
    early: Option<Writeback>,
}

#[derive(Default)]
struct MetaFrame {
    chunks: Vec<(ChunkId, Vec<u8>)>,
    bytes: usize,
}

/// Counters of what a run added.
#[derive(Debug, Default)]
pub(crate) struct SinkCounters {
    pub new_chunks: AtomicU64,
    pub new_data_bytes: AtomicU64,
    pub new_meta_bytes: AtomicU64,
    pub pack_bytes: AtomicU64,
    pub packs: AtomicU64,
}

/// A full pack of a local store whose fsync runs on its own thread.
struct Syncing {
    sync: std::thread::JoinHandle<std::io::Result<()>>,
    id: PackId,
    trailer: PackTrailer,
    len: u64,
    temp: PathBuf,
    ids: Vec<ChunkId>,
}

/// Packs whose fsync may run at once; one more waits for the oldest.
const SYNCS_IN_FLIGHT: usize = 2;

/// Writes a pack's trailer into its temp file and hands back the file.
fn finish_pack(
    builder: PackBuilder<BufWriter<File>>,
    temp: &Path,
) -> Result<(PackId, PackTrailer, u64, File)> {
    let (id, trailer, len, w) = builder.finish().at(temp)?;
    let f = w.into_inner().map_err(|e| e.into_error()).at(temp)?;
    Ok((id, trailer, len, f))
}

/// Finishes a pack built into the temp file `temp`: trailer, fsync, then
/// renamed into `packs/` (and the directory fsynced), or, for a remote
/// store, uploaded (and the temp removed). If a pack with the same bytes
/// is there already, the temp is dropped and `placed` is false.
/// Returns (id, trailer, length, placed).
pub(crate) fn seal_pack(
    files: &StoreFiles,
    builder: PackBuilder<BufWriter<File>>,
    temp: &Path,
) -> Result<(PackId, PackTrailer, u64, bool)> {
    let (id, trailer, len, f) = finish_pack(builder, temp)?;
    f.sync_all().at(temp)?;
    drop(f);
    let placed = place_pack(files, &id, temp)?;
    Ok((id, trailer, len, placed))
}

/// Puts the durable temp file of pack `id` in place: renamed into
/// `packs/` (directory fsynced) or uploaded. False when the pack was there.
fn place_pack(files: &StoreFiles, id: &PackId, temp: &Path) -> Result<bool> {
    if let Some(b) = files.remote() {
        let bytes = fs::read(temp).at(temp)?;
        let placed = b.put_new(&crate::files::pack_name(id), bytes);
        let _ = fs::remove_file(temp);
        return Ok(placed?);
    }
    let dest = files.pack_path(id);
    if dest.exists() {
        let _ = fs::remove_file(temp);
        return Ok(false);
    }
    atomic::commit(temp, &dest, true)?;
    Ok(true)
}

/// Deduplicating chunk sink for one run.
pub(crate) struct ChunkSink<'s> {
    store: &'s Store,
    pending: Mutex<HashSet<ChunkId>>,
    data: Mutex<Option<OpenPack>>,
    meta: Mutex<(Option<OpenPack>, MetaFrame)>,
    files: Mutex<Vec<([u8; 32], Vec<u8>)>>,
    /// Packs this run created (ids only: their entries are re-read from
    /// the trailer if the run is abandoned, so memory does not grow with data).
    sealed: Mutex<Vec<PackId>>,
    /// Full packs being fsynced, oldest first.
    syncing: Mutex<VecDeque<Syncing>>,
    /// Whole-file records reached the index (they name this run's chunks).
    records_written: std::sync::atomic::AtomicBool,
    pub counters: SinkCounters,
}

impl<'s> ChunkSink<'s> {
    pub fn new(store: &'s Store) -> Self {
        Self {
            store,
            pending: Mutex::new(HashSet::new()),
            data: Mutex::new(None),
            meta: Mutex::new((None, MetaFrame::default())),
            files: Mutex::new(Vec::new()),
            sealed: Mutex::new(Vec::new()),
            syncing: Mutex::new(VecDeque::new()),
            records_written: Default::default(),
            counters: SinkCounters::default(),
        }
    }

    /// For each id, whether it may be new (not indexed, not claimed yet),
    /// without claiming it.
    pub fn peek(&self, ids: &[ChunkId]) -> Result<Vec<bool>> {
        let pending = self.pending.lock().expect("pending lock");
        ids.iter()
            .map(|id| Ok(!pending.contains(id) && !self.store.index().contains(id)?))
            .collect()
    }

    /// The content recorded for a whole-file hash, if all its chunks are
    /// still indexed at the top level.
    pub fn known_file(&self, hash: &[u8; 32]) -> Result<Option<FileContent>> {
        let Some(bytes) = self.store.index().file_by_hash(hash)? else {
            return Ok(None);
        };
        let Ok(rec) = FileContent::decode(&bytes) else {
            return Ok(None);
        };
        // Delta records are never remembered; one found here (a crafted
        // or future index) is not taken: it would tie this file to another
        // file's chain of bases.
        if rec.is_delta() {
            return Ok(None);
        }
        let top: Vec<ChunkId> = match &rec.chunks {
            ChunkList::Inline(c) => c.iter().map(|c| c.id).collect(),
            ChunkList::Tree { root, .. } => vec![*root],
        };
        for id in &top {
            if !self.store.index().contains(id)? {
                return Ok(None);
            }
        }
        Ok(Some(rec))
    }

    /// Records a file's content under its hash for whole-file dedup; the
    /// record reaches the index in [`finish`](Self::finish), once every
    /// chunk it names is durable.
    pub fn remember_file(&self, content: &FileContent) -> Result<()> {
        let bytes = content.encode().what("file content record")?;
        self.files
            .lock()
            .expect("files lock")
            .push((content.hash, bytes));
        Ok(())
    }

    /// For each id, whether it is new: not in the index and not claimed
    /// earlier in this run. New ids are claimed: the caller must store them.
    pub fn claim(&self, ids: &[ChunkId]) -> Result<Vec<bool>> {
        self.claim_as(ids, |id| self.store.index().contains(id))
    }

    /// [`claim`](Self::claim) with `indexed` saying whether an id is in
    /// the index.
    fn claim_as(
        &self,
        ids: &[ChunkId],
        indexed: impl Fn(&ChunkId) -> std::result::Result<bool, cairn_index::IndexError>,
    ) -> Result<Vec<bool>> {
        let mut pending = self.pending.lock().expect("pending lock");
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let new = !pending.contains(id) && !indexed(id)?;
            if new {
                pending.insert(*id);
            }
            out.push(new);
        }
        Ok(out)
    }

    /// Appends an encoded data frame holding claimed chunks.
    pub fn add_data_frame(&self, frame: &[u8], chunks: &[FrameChunk]) -> Result<()> {
        let raw: u64 = chunks.iter().map(|c| u64::from(c.2)).sum();
        self.counters
            .new_chunks
            .fetch_add(chunks.len() as u64, Ordering::Relaxed);
        self.counters
            .new_data_bytes
            .fetch_add(raw, Ordering::Relaxed);
        let mut slot = self.data.lock().expect("data pack lock");
        self.append(&mut slot, frame, chunks)
    }

    /// Stores a metadata node (if new) and returns its id.
    pub fn put_meta(&self, bytes: Vec<u8>) -> Result<ChunkId> {
        let id = ChunkId::of(&bytes);
        // Looked up among metadata entries only: a snapshot that changed
        // nothing stores a few nodes and need not load every data entry.
        if !self.claim_as(&[id], |id| self.store.index().contains_meta(id))?[0] {
            return Ok(id);
        }
        self.counters
            .new_meta_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let mut guard = self.meta.lock().expect("meta pack lock");
        let (slot, frame) = &mut *guard;
        frame.bytes += bytes.len();
        frame.chunks.push((id, bytes));
        if frame.bytes >= self.store.config().compression.frame_target as usize {
            self.flush_meta_frame(slot, frame)?;
        }
        Ok(id)
    }

    fn flush_meta_frame(&self, slot: &mut Option<OpenPack>, frame: &mut MetaFrame) -> Result<()> {
        if frame.chunks.is_empty() {
            return Ok(());
        }
        let raw: Vec<u8> = frame
            .chunks
            .iter()
            .flat_map(|(_, b)| b.iter().copied())
            .collect();
        let encoded = pack::encode_frame(&raw, self.store.config().compression.zstd_level)
            .what("metadata frame")?;
        let chunks: Vec<FrameChunk> = frame
            .chunks
            .iter()
            .map(|(id, b)| (*id, BlobKind::Meta, b.len() as u32))
            .collect();
        *frame = MetaFrame::default();
        self.append(slot, &encoded, &chunks)
    }

    fn append(
        &self,
        slot: &mut Option<OpenPack>,
        frame: &[u8],
        chunks: &[FrameChunk],
    ) -> Result<()> {
        if slot.is_none() {
            let (f, temp) = atomic::create_temp(&self.store.tmp_dir(), "pack")?;
            let early = match self.store.files().remote() {
                Some(_) => None,
                None => Some(Writeback::new(f.try_clone().at(&temp)?)),
            };
            // A small buffer: frames (tens of KiB) bypass it and go to the
            // file without a copy; the trailer's small writes gather in it.
            let builder = PackBuilder::new(BufWriter::with_capacity(8 << 10, f)).at(&temp)?;
            *slot = Some(OpenPack {
                builder,
                temp,
                ids: Vec::new(),
                early,
            });
        }
        let open = slot.as_mut().expect("just opened");
        open.builder.add_frame(frame, chunks).at(&open.temp)?;
        open.ids.extend(chunks.iter().map(|c| c.0));
        if open.builder.len() >= self.store.config().pack_target {
            self.seal(slot.take().expect("open"))?;
        } else if let Some(early) = open.early.as_mut() {
            early.maybe_start(open.builder.len()).at(&open.temp)?;
        }
        Ok(())
    }

    /// Finishes a pack: trailer, fsync, rename, dir fsync, then index. For
    /// a local store the fsync is started on its own thread and the rest
    /// happens in [`settle`](Self::settle).
    fn seal(&self, open: OpenPack) -> Result<()> {
        if self.store.files().remote().is_some() {
            let (id, trailer, len, placed) =
                seal_pack(self.store.files(), open.builder, &open.temp)?;
            return self.sealed_pack(id, &trailer, len, placed, &open.ids);
        }
        let (id, trailer, len, f) = finish_pack(open.builder, &open.temp)?;
        let early = open.early;
        let sync = std::thread::Builder::new()
            .name("cairn-pack-sync".into())
            .spawn(move || match early {
                Some(early) => early.sync_all(),
                None => f.sync_all(),
            })
            .at(&open.temp)?;
        self.syncing
            .lock()
            .expect("syncing lock")
            .push_back(Syncing {
                sync,
                id,
                trailer,
                len,
                temp: open.temp,
                ids: open.ids,
            });
        self.settle(false)
    }

    /// Places and indexes the packs whose fsync finished, in order; with
    /// `all`, waits for every one. Also waits while too many are in flight.
    fn settle(&self, all: bool) -> Result<()> {
        let mut syncing = self.syncing.lock().expect("syncing lock");
        while let Some(front) = syncing.front() {
            if !(all || front.sync.is_finished() || syncing.len() > SYNCS_IN_FLIGHT) {
                break;
            }
            let s = syncing.pop_front().expect("front");
            let synced = s
                .sync
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the fsync thread panicked")));
            if let Err(e) = synced {
                let _ = fs::remove_file(&s.temp);
                return Err(e).at(&s.temp);
            }
            let placed = match place_pack(self.store.files(), &s.id, &s.temp) {
                Ok(placed) => placed,
                Err(e) => {
                    let _ = fs::remove_file(&s.temp);
                    return Err(e);
                }
            };
            self.sealed_pack(s.id, &s.trailer, s.len, placed, &s.ids)?;
        }
        Ok(())
    }

    /// Books a durable, placed pack: counters, the index, the claimed set.
    fn sealed_pack(
        &self,
        id: PackId,
        trailer: &PackTrailer,
        len: u64,
        placed: bool,
        ids: &[ChunkId],
    ) -> Result<()> {
        // A pack whose bytes existed already is not ours to remove if this
        // run is abandoned.
        if placed {
            self.counters.pack_bytes.fetch_add(len, Ordering::Relaxed);
            self.counters.packs.fetch_add(1, Ordering::Relaxed);
            self.sealed.lock().expect("sealed lock").push(id);
        }
        self.store.index().add_pack(id, len, &trailer.entries)?;
        let mut pending = self.pending.lock().expect("pending lock");
        for id in ids {
            pending.remove(id);
        }
        Ok(())
    }

    /// Seals every open pack and flushes the index.
    pub fn finish(&self) -> Result<()> {
        {
            let mut guard = self.meta.lock().expect("meta pack lock");
            let (slot, frame) = &mut *guard;
            self.flush_meta_frame(slot, frame)?;
            if let Some(open) = slot.take() {
                self.seal(open)?;
            }
        }
        if let Some(open) = self.data.lock().expect("data pack lock").take() {
            self.seal(open)?;
        }
        self.settle(true)?;
        for (hash, rec) in self.files.lock().expect("files lock").drain(..) {
            self.records_written.store(true, Ordering::Relaxed);
            self.store.index().put_file(&hash, &rec)?;
        }
        self.store.index().flush()?;
        Ok(())
    }

    /// Undoes the run after a failure: open packs are dropped, and packs
    /// sealed by this run are removed from the index and deleted, so the
    /// store is as it was.
    pub fn abandon(&self) {
        // Records written by `finish` name chunks of the packs removed
        // below; they go too (all of them: records are only a shortcut).
        if self.records_written.load(Ordering::Relaxed) {
            let _ = self.store.index().forget_files();
        }
        let syncing = std::mem::take(&mut *self.syncing.lock().unwrap_or_else(|e| e.into_inner()));
        for s in syncing {
            let _ = s.sync.join();
            let _ = fs::remove_file(&s.temp);
        }
        let sealed = std::mem::take(&mut *self.sealed.lock().unwrap_or_else(|e| e.into_inner()));
        for id in sealed {
            if self.store.index().remove_pack(id).is_ok() {
                let _ = fs::remove_file(self.store.pack_path(&id));
            }
        }
        let _ = self.store.index().flush();
        let drop_open = |open: Option<OpenPack>| {
            if let Some(o) = open {
                drop(o.builder);
                let _ = fs::remove_file(&o.temp);
            }
        };
        drop_open(self.data.lock().map(|mut g| g.take()).unwrap_or(None));
        drop_open(self.meta.lock().map(|mut g| g.0.take()).unwrap_or(None));
    }
}
