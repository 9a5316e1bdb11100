//! The sled index: a derived cache of where chunks live and which
//! snapshots exist.
//!
//! Nothing here is the truth: packs (with their trailers) and manifests
//! are. The index can be deleted at any time and rebuilt from them, and
//! the engine checks it against the pack directory on open. sled 0.34 is
//! unmaintained beta software, which is one more reason it sits behind
//! this narrow interface and holds nothing that cannot be recomputed.
//!
//! Trees:
//! - `meta`: index format version, store id, `complete` marker;
//! - `packs`: pack id -> (pack number u32, pack length u64);
//! - `packno`: pack number -> pack id;
//! - `entries`: pack number -> the pack's trailer entries (chunk id and
//!   location of each chunk), one record per pack, for records up to
//!   64 KiB;
//! - `entry_files`: pack number -> length and hash of the file under
//!   `INDEX/entries/` that holds a longer record ([`entryfile`]);
//! - `meta_packs`: pack number -> nothing, for each pack holding metadata
//!   chunks (so the few metadata entries can be found without reading
//!   every pack's record);
//! - `snapshots`: snapshot id (i64 BE) -> manifest bytes;
//! - `files`: whole-file blake3 -> encoded file content (whole-file dedup).
//!
//! Chunk id -> location is answered through the `entries` records: an
//! in-memory [`chunkmap`] (12 bytes a chunk and a filter of 2–4, built
//! from the records on the first lookup) names the candidate entries, and the full id in the
//! record confirms one. The byte layout of the records is in [`record`].
//!
//! On disk: sled under `INDEX/sled/`, entry files under `INDEX/entries/`.
#![deny(missing_docs)]

mod chunkmap;
mod entryfile;
pub mod record;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, RwLock};

use chunkmap::{prefix_of, ChunkMap, MapFull, Slot};
use entryfile::{EntryFiles, ReadError};

use std::path::{Path, PathBuf};

use cairn_format::pack::{BlobKind, PackEntry};
use cairn_format::{ChunkId, PackId, SnapshotId};

/// Version of the index layout; a different one means rebuild.
pub const INDEX_VERSION: u32 = 4;

/// Errors of the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// sled failed.
    #[error("index at {path}: {cause}")]
    Sled {
        /// The index directory.
        path: PathBuf,
        /// sled's error (part of the message, so not exposed as a source).
        cause: sled::Error,
    },
    /// Reading or writing a file of the index failed.
    #[error("index file {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The in-memory chunk map would name more than 2³² chunks.
    #[error("index at {path}: more than 4,294,967,295 chunks to map in one run")]
    MapFull {
        /// The index directory.
        path: PathBuf,
    },
    /// A record does not decode: the cache is damaged.
    #[error("index at {path} holds a damaged {what} record; run `cairn index rebuild`")]
    Damaged {
        /// The index directory.
        path: PathBuf,
        /// Which record kind.
        what: &'static str,
    },
}

type Result<T> = std::result::Result<T, IndexError>;

/// Where a chunk lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkLocation {
    /// The pack.
    pub pack: PackId,
    /// Data or metadata.
    pub kind: BlobKind,
    /// Frame offset in the pack.
    pub frame_offset: u64,
    /// Frame length.
    pub frame_len: u32,
    /// Offset inside the decoded frame.
    pub offset: u32,
    /// Chunk length.
    pub len: u32,
}

/// Whether an opened index can be trusted as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexState {
    /// Built completely for this store and this index version.
    Ready,
    /// Empty, of another version or store, or a rebuild was interrupted:
    /// it has been cleared and must be rebuilt.
    NeedsRebuild,
}

/// The opened index.
pub struct Index {
    path: PathBuf,
    /// The store this index is for (kept in `meta` across a clear).
    store_id: [u8; 16],
    db: sled::Db,
    meta: sled::Tree,
    packs: sled::Tree,
    packno: sled::Tree,
    entries: sled::Tree,
    entry_files: sled::Tree,
    meta_packs: sled::Tree,
    snapshots: sled::Tree,
    files: sled::Tree,
    /// The records too long for sled.
    entry_dir: EntryFiles,
    /// Built from `entries` on first use; `None` until then.
    map: RwLock<Option<ChunkMap>>,
    /// The metadata entries of the `meta_packs`, built on first use.
    meta_map: RwLock<Option<ChunkMap>>,
    /// Recently read `entries` records (and `packno` values).
    recent: Mutex<RecentPacks>,
    /// The next pack number, once read from `packno`.
    next_pack_no: Mutex<Option<u32>>,
}

/// A pack's `entries` record and `packno` value.
#[derive(Clone)]
struct CachedPack {
    entries: sled::IVec,
    pack_id: sled::IVec,
}

/// Bytes of pack records [`Index`] keeps in memory for lookups (a full
/// data pack's record is about 700 KiB).
const RECENT_BYTES: usize = 8 << 20;

/// Recently read pack records by pack number, dropped oldest first once
/// they exceed [`RECENT_BYTES`].
#[derive(Default)]
struct RecentPacks {
    packs: HashMap<u32, CachedPack>,
    order: VecDeque<u32>,
    bytes: usize,
}

impl RecentPacks {
    fn get(&self, no: u32) -> Option<&CachedPack> {
        self.packs.get(&no)
    }

    fn insert(&mut self, no: u32, pack: CachedPack) {
        self.remove(no);
        let len = pack.entries.len();
        while self.bytes + len > RECENT_BYTES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.remove(old);
        }
        self.bytes += len;
        self.order.push_back(no);
        self.packs.insert(no, pack);
    }

    fn remove(&mut self, no: u32) {
        if let Some(old) = self.packs.remove(&no) {
            self.bytes -= old.entries.len();
        }
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

impl Index {
    /// Opens (creating if needed) the index at `path` for the store
    /// `store_id`. A damaged, foreign or outdated index is cleared and
    /// reported as [`IndexState::NeedsRebuild`].
    pub fn open(path: &Path, store_id: [u8; 16]) -> Result<(Self, IndexState)> {
        let err = |cause| IndexError::Sled {
            path: path.to_owned(),
            cause,
        };
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| IndexError::Io { path, source }
        };
        // Index versions up to 3 kept sled directly in `INDEX/`: all of it
        // goes (`conf`, by which it is known, last).
        if path.join("conf").exists() {
            for entry in std::fs::read_dir(path).map_err(io(path))? {
                let p = entry.map_err(io(path))?.path();
                let name = p.file_name().unwrap_or_default();
                if name == "sled" || name == "entries" || name == "conf" {
                    continue;
                }
                let removed = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                removed.map_err(io(&p))?;
            }
            std::fs::remove_file(path.join("conf")).map_err(io(&path.join("conf")))?;
        }
        let entry_dir =
            EntryFiles::open(path.join("entries")).map_err(io(&path.join("entries")))?;
        let db = sled::Config::new()
            .path(path.join("sled"))
            .cache_capacity(16 << 20)
            .flush_every_ms(None)
            .mode(sled::Mode::LowSpace)
            .open()
            .map_err(err)?;
        let tree = |name: &str| db.open_tree(name).map_err(err);
        let index = Self {
            meta: tree("meta")?,
            packs: tree("packs")?,
            packno: tree("packno")?,
            entries: tree("entries")?,
            entry_files: tree("entry_files")?,
            meta_packs: tree("meta_packs")?,
            snapshots: tree("snapshots")?,
            files: tree("files")?,
            entry_dir,
            path: path.to_owned(),
            store_id,
            map: RwLock::new(None),
            meta_map: RwLock::new(None),
            recent: Mutex::new(RecentPacks::default()),
            next_pack_no: Mutex::new(None),
            db,
        };
        let version = index.meta_get("version")?;
        let id = index.meta_get("store_id")?;
        let complete = index.meta_get("complete")?;
        let ok = version.as_deref() == Some(&INDEX_VERSION.to_le_bytes()[..])
            && id.as_deref() == Some(&store_id[..])
            && complete.is_some();
        if ok {
            return Ok((index, IndexState::Ready));
        }
        index.clear()?;
        // Index version 1 kept one record per chunk.
        index.db.drop_tree("chunks").map_err(err)?;
        index
            .meta
            .insert("version", &INDEX_VERSION.to_le_bytes())
            .map_err(err)?;
        index.meta.insert("store_id", &store_id).map_err(err)?;
        Ok((index, IndexState::NeedsRebuild))
    }

    fn err(&self, cause: sled::Error) -> IndexError {
        IndexError::Sled {
            path: self.path.clone(),
            cause,
        }
    }

    fn io(&self, (path, source): (PathBuf, std::io::Error)) -> IndexError {
        IndexError::Io { path, source }
    }

    fn map_full(&self, _: MapFull) -> IndexError {
        IndexError::MapFull {
            path: self.path.clone(),
        }
    }

    fn damaged(&self, what: &'static str) -> IndexError {
        IndexError::Damaged {
            path: self.path.clone(),
            what,
        }
    }

    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .meta
            .get(key)
            .map_err(|e| self.err(e))?
            .map(|v| v.to_vec()))
    }

    /// Empties every tree and drops the `complete` marker.
    pub fn clear(&self) -> Result<()> {
        // The in-memory views go first, so that a clear failing part-way
        // leaves none of them describing records already gone.
        *self.map.write().expect("chunk map lock") = None;
        *self.meta_map.write().expect("chunk map lock") = None;
        self.recent.lock().expect("pack cache lock").clear();
        *self.next_pack_no.lock().expect("pack number lock") = None;
        for t in [
            &self.meta,
            &self.packs,
            &self.packno,
            &self.entries,
            &self.entry_files,
            &self.meta_packs,
            &self.snapshots,
            &self.files,
        ] {
            t.clear().map_err(|e| self.err(e))?;
        }
        // Still this store's index: without it the next open would see a
        // foreign index and rebuild it once more.
        self.meta
            .insert("store_id", &self.store_id)
            .map_err(|e| self.err(e))?;
        // Only once no durable record names them do the files go.
        self.db.flush().map_err(|e| self.err(e))?;
        self.entry_dir.clear().map_err(|e| self.io(e))?;
        Ok(())
    }

    /// Marks a rebuild (or creation) as finished and flushes.
    pub fn mark_complete(&self) -> Result<()> {
        self.meta
            .insert("version", &INDEX_VERSION.to_le_bytes())
            .map_err(|e| self.err(e))?;
        self.meta
            .insert("complete", &[1u8])
            .map_err(|e| self.err(e))?;
        self.flush()
    }

    /// Writes everything to disk.
    pub fn flush(&self) -> Result<()> {
        // Only the files of removals this flush makes durable.
        let doomed = self.entry_dir.take_doomed();
        if let Err(e) = self.db.flush() {
            self.entry_dir.doom_again(doomed);
            return Err(self.err(e));
        }
        self.entry_dir.remove(doomed);
        Ok(())
    }

    /// The `entries` record of pack number `no`, from sled or its file;
    /// `None` if it has none.
    fn entries_of(&self, no: u32) -> Result<Option<sled::IVec>> {
        let key = record::encode_pack_no(no);
        if let Some(v) = self.entries.get(key).map_err(|e| self.err(e))? {
            return Ok(Some(v));
        }
        let Some(rec) = self.entry_files.get(key).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        let file = record::decode_entry_file(&rec).map_err(|what| self.damaged(what))?;
        match self.entry_dir.read(no, &file) {
            Ok(bytes) => Ok(Some(bytes.into())),
            // A pack removed (and its file deleted) since the record was
            // read is simply gone; otherwise the file is damaged.
            Err(_) if self.entry_files.get(key).map_err(|e| self.err(e))? != Some(rec) => Ok(None),
            Err(ReadError::Damaged) => Err(self.damaged("pack entries file")),
            Err(ReadError::Io(path, source)) => Err(IndexError::Io { path, source }),
        }
    }

    /// The pack id of pack number `no` if that pack is indexed: its
    /// `packno` record names a pack whose `packs` record carries `no`. An
    /// `entries` record left behind by an interrupted add or removal (a
    /// crash before the flush) has none, and must never make a chunk look
    /// present.
    fn named(&self, no: u32) -> Result<Option<sled::IVec>> {
        let key = record::encode_pack_no(no);
        let Some(id) = self.packno.get(key).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        let carries = self
            .packs
            .get(&id)
            .map_err(|e| self.err(e))?
            .and_then(|rec| record::decode_pack(&rec).ok())
            .is_some_and(|rec| rec.pack_no == no);
        Ok(carries.then_some(id))
    }

    /// Every pack number with an `entries` record, in sled or in a file.
    fn entry_pack_nos(&self) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        for tree in [&self.entries, &self.entry_files] {
            for k in tree.iter().keys() {
                let k = k.map_err(|e| self.err(e))?;
                out.push(record::decode_pack_no(&k).map_err(|what| self.damaged(what))?);
            }
        }
        Ok(out)
    }

    /// Runs `f` on the chunk map, building it from `entries` first if
    /// this is its first use.
    fn with_map<T>(&self, f: impl FnOnce(&ChunkMap) -> T) -> Result<T> {
        if let Some(map) = self.map.read().expect("chunk map lock").as_ref() {
            return Ok(f(map));
        }
        let mut guard = self.map.write().expect("chunk map lock");
        if guard.is_none() {
            // Pack by pack, so the map's merges are all the memory a build
            // takes beyond one pack's record.
            let mut map = ChunkMap::default();
            for no in self.entry_pack_nos()? {
                let Some(v) = self.entries_of(no)? else {
                    continue;
                };
                let slots = slots_of(no, &v).map_err(|what| self.damaged(what))?;
                map.add(slots).map_err(|e| self.map_full(e))?;
            }
            *guard = Some(map);
        }
        Ok(f(guard.as_ref().expect("just built")))
    }

    /// Runs `f` on the map of metadata entries, building it from the
    /// `meta_packs` first if this is its first use.
    fn with_meta_map<T>(&self, f: impl FnOnce(&ChunkMap) -> T) -> Result<T> {
        if let Some(map) = self.meta_map.read().expect("chunk map lock").as_ref() {
            return Ok(f(map));
        }
        let mut guard = self.meta_map.write().expect("chunk map lock");
        if guard.is_none() {
            let mut slots = Vec::new();
            for k in self.meta_packs.iter().keys() {
                let k = k.map_err(|e| self.err(e))?;
                let no = record::decode_pack_no(&k).map_err(|what| self.damaged(what))?;
                let Some(v) = self.entries_of(no)? else {
                    continue;
                };
                slots.extend(meta_slots_of(no, &v).map_err(|what| self.damaged(what))?);
            }
            let mut map = ChunkMap::default();
            map.add(slots).map_err(|e| self.map_full(e))?;
            *guard = Some(map);
        }
        Ok(f(guard.as_ref().expect("just built")))
    }

    /// The records of pack number `no`, if it is indexed.
    fn pack_records(&self, no: u32) -> Result<Option<CachedPack>> {
        // Held while sled is read, so a pack removed meanwhile cannot be
        // put back into the cache after `remove_pack` dropped it.
        let mut recent = self.recent.lock().expect("pack cache lock");
        if let Some(c) = recent.get(no) {
            return Ok(Some(c.clone()));
        }
        let Some(pack_id) = self.named(no)? else {
            return Ok(None);
        };
        let Some(entries) = self.entries_of(no)? else {
            return Ok(None);
        };
        let c = CachedPack { entries, pack_id };
        recent.insert(no, c.clone());
        Ok(Some(c))
    }

    /// The newest indexed entry of `id`: its slot and its pack's records.
    fn find(&self, id: &ChunkId) -> Result<Option<(Slot, CachedPack)>> {
        let candidates = self.with_map(|m| candidates_of(m, id))?;
        self.confirm(id, candidates)
    }

    /// The first of `candidates` whose pack is still indexed and whose
    /// entry holds exactly `id`.
    fn confirm(&self, id: &ChunkId, candidates: Vec<Slot>) -> Result<Option<(Slot, CachedPack)>> {
        for slot in candidates {
            let Some(pack) = self.pack_records(slot.pack_no)? else {
                continue; // removed since the map was built
            };
            if record::entry_id(&pack.entries, slot.entry as usize) == Some(*id) {
                return Ok(Some((slot, pack)));
            }
        }
        Ok(None)
    }

    /// Where `id` lives, if indexed; where several packs hold it, the
    /// newest.
    pub fn lookup(&self, id: &ChunkId) -> Result<Option<ChunkLocation>> {
        let Some((slot, pack)) = self.find(id)? else {
            return Ok(None);
        };
        self.location(slot, pack)
    }

    /// Where `id` lives, looked up among the metadata entries first (until
    /// the full map is built anyway), so that reading trees and chunk
    /// lists does not read every pack's record: any indexed copy, not
    /// necessarily the newest.
    pub fn lookup_any(&self, id: &ChunkId) -> Result<Option<ChunkLocation>> {
        if self.map.read().expect("chunk map lock").is_none() {
            if let Some((slot, pack)) = self.find_meta(id)? {
                return self.location(slot, pack);
            }
        }
        self.lookup(id)
    }

    /// The location recorded at `slot`, whose pack's records are `pack`.
    fn location(&self, slot: Slot, pack: CachedPack) -> Result<Option<ChunkLocation>> {
        let pack_id = record::decode_pack_id(&pack.pack_id).map_err(|what| self.damaged(what))?;
        let e = record::decode_entry(&pack.entries, slot.entry as usize)
            .map_err(|what| self.damaged(what))?;
        Ok(Some(ChunkLocation {
            pack: pack_id,
            kind: e.kind,
            frame_offset: e.frame_offset,
            frame_len: e.frame_len,
            offset: e.offset,
            len: e.len,
        }))
    }

    /// Whether `id` is indexed.
    pub fn contains(&self, id: &ChunkId) -> Result<bool> {
        Ok(self.find(id)?.is_some())
    }

    /// Whether `id` is indexed as a metadata chunk, answered (until the
    /// full map is built anyway) from the metadata entries alone, so that a
    /// snapshot that stores only metadata (nothing changed) does not read
    /// every pack's record. A yes is always right; a no may miss a copy the
    /// full map would find (then the node is stored once more, no harm).
    pub fn contains_meta(&self, id: &ChunkId) -> Result<bool> {
        if self.map.read().expect("chunk map lock").is_some() {
            return self.contains(id);
        }
        Ok(self.find_meta(id)?.is_some())
    }

    /// The first metadata entry of `id` among the `meta_packs`.
    fn find_meta(&self, id: &ChunkId) -> Result<Option<(Slot, CachedPack)>> {
        let candidates = self.with_meta_map(|m| candidates_of(m, id))?;
        self.confirm(id, candidates)
    }

    /// Records a pack and all its entries. The pack record is written last,
    /// so a pack listed in `packs` has all its chunks indexed.
    pub fn add_pack(&self, pack: PackId, pack_len: u64, entries: &[PackEntry]) -> Result<()> {
        if self.packs.contains_key(pack.0).map_err(|e| self.err(e))? {
            return Ok(());
        }
        let no = self.new_pack_no()?;
        let key = record::encode_pack_no(no);
        self.packno.insert(key, &pack.0).map_err(|e| self.err(e))?;
        let value = record::encode_entries(entries);
        if value.len() > entryfile::INLINE_MAX {
            let file = self.entry_dir.write(no, &value).map_err(|e| self.io(e))?;
            self.entry_files
                .insert(key, &record::encode_entry_file(&file)[..])
                .map_err(|e| self.err(e))?;
        } else {
            self.entries
                .insert(key, value.as_slice())
                .map_err(|e| self.err(e))?;
        }
        let rec = record::encode_pack(&record::PackRecord {
            pack_no: no,
            pack_len,
        });
        let meta = meta_slots_of(no, &value).map_err(|what| self.damaged(what))?;
        if !meta.is_empty() {
            self.meta_packs.insert(key, &[]).map_err(|e| self.err(e))?;
        }
        self.packs.insert(pack.0, &rec).map_err(|e| self.err(e))?;
        let meta_added = add_to(&self.meta_map, meta);
        // After the record is in sled: a map being built now either read
        // it or is waited for here (and then gets the slots twice, which
        // costs nothing but 12 bytes each).
        let slots = slots_of(no, &value).map_err(|what| self.damaged(what))?;
        if let Err(e) = meta_added.and(add_to(&self.map, slots)) {
            // Neither map may answer without this pack's slots.
            *self.meta_map.write().expect("chunk map lock") = None;
            *self.map.write().expect("chunk map lock") = None;
            return Err(self.map_full(e));
        }
        Ok(())
    }

    /// A pack number never used in this index: one past the highest in
    /// `packno` (numbers are not taken from sled's id generator, which
    /// jumps by two million at every open and would wrap a u32 within a
    /// few thousand opens).
    ///
    /// Numbers only grow, across runs too (`meta` keeps the next one), so
    /// a removed pack's number, its entry file or its slots in a built map
    /// are never mistaken for a later pack's.
    fn new_pack_no(&self) -> Result<u32> {
        let mut next = self.next_pack_no.lock().expect("pack number lock");
        let no = match *next {
            Some(no) => no,
            None => {
                let past_last = match self.packno.last().map_err(|e| self.err(e))? {
                    Some((k, _)) => record::decode_pack_no(&k)
                        .map_err(|what| self.damaged(what))?
                        .checked_add(1)
                        .ok_or_else(|| self.damaged("pack number"))?,
                    None => 0,
                };
                let kept = match self.meta_get("next_pack_no")? {
                    Some(v) => u32::from_le_bytes(
                        v.as_slice()
                            .try_into()
                            .map_err(|_| self.damaged("pack number"))?,
                    ),
                    None => 0,
                };
                past_last.max(kept)
            }
        };
        let after = no
            .checked_add(1)
            .ok_or_else(|| self.damaged("pack number"))?;
        // Before the pack's own records, so a durable `packno` never names
        // a number `meta` would hand out again.
        self.meta
            .insert("next_pack_no", &after.to_le_bytes())
            .map_err(|e| self.err(e))?;
        *next = Some(after);
        Ok(no)
    }

    /// Forgets a pack and its entries. A chunk that other packs also hold
    /// stays indexed through them.
    pub fn remove_pack(&self, pack: PackId) -> Result<()> {
        let Some(rec) = self.packs.remove(pack.0).map_err(|e| self.err(e))? else {
            return Ok(());
        };
        let no = record::decode_pack(&rec)
            .map_err(|what| self.damaged(what))?
            .pack_no;
        let key = record::encode_pack_no(no);
        {
            // Under the cache's lock, so no lookup reads one of the two
            // records without the other.
            let mut recent = self.recent.lock().expect("pack cache lock");
            self.entries.remove(key).map_err(|e| self.err(e))?;
            if self
                .entry_files
                .remove(key)
                .map_err(|e| self.err(e))?
                .is_some()
            {
                self.entry_dir.doom(no);
            }
            self.packno.remove(key).map_err(|e| self.err(e))?;
            self.meta_packs.remove(key).map_err(|e| self.err(e))?;
            recent.remove(no);
        }
        for map in [&self.map, &self.meta_map] {
            if let Some(map) = map.write().expect("chunk map lock").as_mut() {
                map.remove_pack(no);
            }
        }
        Ok(())
    }

    /// Every chunk the index places in `pack`.
    pub fn chunks_in_pack(&self, pack: &PackId) -> Result<Vec<ChunkId>> {
        let Some(rec) = self.packs.get(pack.0).map_err(|e| self.err(e))? else {
            return Ok(Vec::new());
        };
        let no = record::decode_pack(&rec)
            .map_err(|what| self.damaged(what))?
            .pack_no;
        let Some(v) = self.entries_of(no)? else {
            return Ok(Vec::new());
        };
        let n = record::entry_count(&v).map_err(|what| self.damaged(what))?;
        Ok((0..n).filter_map(|i| record::entry_id(&v, i)).collect())
    }

    /// Drops every whole-file record (they may name chunks that are gone).
    pub fn forget_files(&self) -> Result<()> {
        self.files.clear().map_err(|e| self.err(e))
    }

    /// Every indexed pack and its length.
    pub fn packs(&self) -> Result<Vec<(PackId, u64)>> {
        let mut out = Vec::new();
        for kv in self.packs.iter() {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            let id = record::decode_pack_id(&k).map_err(|what| self.damaged(what))?;
            let rec = record::decode_pack(&v).map_err(|what| self.damaged(what))?;
            out.push((id, rec.pack_len));
        }
        Ok(out)
    }

    /// Number of distinct indexed chunks (counted by the first 8 bytes of
    /// their ids, so two chunks sharing those would count once).
    pub fn chunk_count(&self) -> Result<usize> {
        let live: HashSet<u32> = self.entry_pack_nos()?.into_iter().collect();
        let mut prefixes: Vec<u64> = self.with_map(|m| {
            m.slots()
                .filter(|s| live.contains(&s.pack_no))
                .map(|s| s.prefix)
                .collect()
        })?;
        prefixes.sort_unstable();
        prefixes.dedup();
        Ok(prefixes.len())
    }

    /// Records a snapshot's manifest bytes in the catalog.
    pub fn add_snapshot(&self, id: SnapshotId, manifest: &[u8]) -> Result<()> {
        self.snapshots
            .insert(record::encode_snapshot_key(id), manifest)
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Drops a snapshot from the catalog.
    pub fn remove_snapshot(&self, id: SnapshotId) -> Result<()> {
        self.snapshots
            .remove(record::encode_snapshot_key(id))
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The catalog: every snapshot id with its manifest bytes, oldest first.
    pub fn snapshots(&self) -> Result<Vec<(SnapshotId, Vec<u8>)>> {
        let mut out = Vec::new();
        for kv in self.snapshots.iter() {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            let id = record::decode_snapshot_key(&k).map_err(|what| self.damaged(what))?;
            out.push((id, v.to_vec()));
        }
        Ok(out)
    }

    /// The encoded file content recorded for a whole-file hash.
    pub fn file_by_hash(&self, hash: &[u8; 32]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .files
            .get(hash)
            .map_err(|e| self.err(e))?
            .map(|v| v.to_vec()))
    }

    /// Records the encoded content of a whole file under its hash.
    pub fn put_file(&self, hash: &[u8; 32], content: &[u8]) -> Result<()> {
        self.files.insert(hash, content).map_err(|e| self.err(e))?;
        Ok(())
    }
}

/// Adds `slots` to the map in `map` if it is built; a map that cannot take
/// them is dropped (an incomplete map must never answer).
fn add_to(map: &RwLock<Option<ChunkMap>>, slots: Vec<Slot>) -> std::result::Result<(), MapFull> {
    let mut guard = map.write().expect("chunk map lock");
    if let Some(m) = guard.as_mut() {
        if let Err(e) = m.add(slots) {
            *guard = None;
            return Err(e);
        }
    }
    Ok(())
}

/// The map slots of an `entries` record of pack number `no`.
fn slots_of(no: u32, entries: &[u8]) -> std::result::Result<Vec<Slot>, &'static str> {
    let n = record::entry_count(entries)?;
    Ok((0..n)
        .map(|i| Slot {
            prefix: prefix_of(&record::entry_id(entries, i).expect("in range").0),
            pack_no: no,
            entry: i as u32,
        })
        .collect())
}

/// The slots of `map` that may hold `id` (none when it is surely absent).
fn candidates_of(map: &ChunkMap, id: &ChunkId) -> Vec<Slot> {
    if map.surely_absent(&id.0) {
        Vec::new()
    } else {
        map.candidates(&id.0)
    }
}

/// The map slots of the metadata entries of an `entries` record.
fn meta_slots_of(no: u32, entries: &[u8]) -> std::result::Result<Vec<Slot>, &'static str> {
    let n = record::entry_count(entries)?;
    let mut out = Vec::new();
    for i in 0..n {
        if record::decode_entry(entries, i)?.kind == BlobKind::Meta {
            out.push(Slot {
                prefix: prefix_of(&record::entry_id(entries, i).expect("in range").0),
                pack_no: no,
                entry: i as u32,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_entries_round_trip_and_foreign_store_rebuilds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let entry = PackEntry {
            id: ChunkId::of(b"a"),
            kind: BlobKind::Meta,
            frame_offset: 16,
            frame_len: 40,
            offset: 3,
            len: 1,
        };
        let pack = PackId::of(b"pack");
        {
            let (idx, state) = Index::open(&path, [1; 16]).unwrap();
            assert_eq!(state, IndexState::NeedsRebuild);
            idx.add_pack(pack, 100, &[entry]).unwrap();
            idx.mark_complete().unwrap();
            let loc = idx.lookup(&entry.id).unwrap().unwrap();
            assert_eq!(loc.pack, pack);
            assert_eq!(
                (loc.kind, loc.frame_offset, loc.len),
                (BlobKind::Meta, 16, 1)
            );
            assert_eq!(idx.packs().unwrap(), vec![(pack, 100)]);
        }
        {
            let (idx, state) = Index::open(&path, [1; 16]).unwrap();
            assert_eq!(state, IndexState::Ready);
            // The metadata entries answer alone before the full map exists.
            assert!(idx.contains_meta(&entry.id).unwrap());
            assert_eq!(idx.lookup_any(&entry.id).unwrap().unwrap().pack, pack);
            assert!(idx.map.read().unwrap().is_none());
            let data = PackEntry {
                id: ChunkId::of(b"data"),
                kind: BlobKind::Data,
                ..entry
            };
            idx.add_pack(PackId::of(b"data pack"), 50, &[data]).unwrap();
            assert!(!idx.contains_meta(&data.id).unwrap());
            assert!(idx.contains(&data.id).unwrap());
            assert!(idx.contains_meta(&entry.id).unwrap());
            idx.remove_pack(pack).unwrap();
            assert!(!idx.contains_meta(&entry.id).unwrap());
            assert!(!idx.contains(&entry.id).unwrap());
            idx.add_pack(pack, 100, &[entry]).unwrap();
        }
        {
            let (idx, _) = Index::open(&path, [1; 16]).unwrap();
            assert!(idx.contains_meta(&entry.id).unwrap());
            assert!(idx.contains(&entry.id).unwrap());
        }
        {
            // A removal cut short after the `packs` record went (a crash
            // before the flush): the entries left behind name nothing.
            let (idx, _) = Index::open(&path, [1; 16]).unwrap();
            idx.packs.remove(pack.0).unwrap();
            idx.flush().unwrap();
        }
        {
            let (idx, _) = Index::open(&path, [1; 16]).unwrap();
            assert!(!idx.contains(&entry.id).unwrap());
            assert!(!idx.contains_meta(&entry.id).unwrap());
            assert_eq!(idx.lookup(&entry.id).unwrap(), None);
        }
        let (idx, state) = Index::open(&path, [2; 16]).unwrap();
        assert_eq!(state, IndexState::NeedsRebuild);
        assert!(!idx.contains(&entry.id).unwrap());
    }

    /// A record longer than `INLINE_MAX` lives in a file checked against
    /// its length and hash; a removed pack's file goes after the flush.
    #[test]
    fn long_records_live_in_checked_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let entries: Vec<PackEntry> = (0..2000u32)
            .map(|i| PackEntry {
                id: ChunkId::of(&i.to_le_bytes()),
                kind: BlobKind::Data,
                frame_offset: u64::from(i) * 100,
                frame_len: 100,
                offset: 0,
                len: 4096,
            })
            .collect();
        assert!(entries.len() * record::ENTRY_LEN > entryfile::INLINE_MAX);
        let (big, small) = (PackId::of(b"big"), PackId::of(b"small"));
        let file = {
            let (idx, _) = Index::open(&path, [1; 16]).unwrap();
            idx.add_pack(small, 10, &entries[..3]).unwrap();
            idx.add_pack(big, 200_000, &entries).unwrap();
            idx.mark_complete().unwrap();
            let files: Vec<_> = std::fs::read_dir(path.join("entries"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            assert_eq!(files.len(), 1, "only the long record is a file");
            files[0].clone()
        };
        {
            let (idx, state) = Index::open(&path, [1; 16]).unwrap();
            assert_eq!(state, IndexState::Ready);
            let loc = idx.lookup(&entries[1999].id).unwrap().unwrap();
            assert_eq!((loc.pack, loc.frame_offset), (big, 199_900));
            assert_eq!(idx.chunks_in_pack(&big).unwrap().len(), 2000);
            assert_eq!(idx.chunk_count().unwrap(), 2000);
        }
        let original = std::fs::read(&file).unwrap();
        for damage in ["flip", "truncate", "remove"] {
            match damage {
                "flip" => {
                    let mut b = original.clone();
                    b[100] ^= 1;
                    std::fs::write(&file, b).unwrap();
                }
                "truncate" => std::fs::write(&file, &original[..53]).unwrap(),
                _ => std::fs::remove_file(&file).unwrap(),
            }
            let (idx, _) = Index::open(&path, [1; 16]).unwrap();
            let got = idx.lookup(&entries[1999].id);
            assert!(
                matches!(
                    got,
                    Err(IndexError::Damaged {
                        what: "pack entries file",
                        ..
                    })
                ),
                "{damage}: {got:?}"
            );
        }
        std::fs::write(&file, &original).unwrap();
        let (idx, _) = Index::open(&path, [1; 16]).unwrap();
        idx.remove_pack(big).unwrap();
        assert!(file.exists(), "kept until the removal is flushed");
        idx.flush().unwrap();
        assert!(!file.exists());
        assert_eq!(idx.lookup(&entries[1999].id).unwrap(), None);
        assert!(idx.contains(&entries[2].id).unwrap());
        idx.add_pack(big, 200_000, &entries).unwrap();
        idx.clear().unwrap();
        assert_eq!(std::fs::read_dir(path.join("entries")).unwrap().count(), 0);
    }

    /// Pack numbers are never reused, within a run (where a built map
    /// still skips a removed pack's number) or across runs (where the
    /// removed pack's entry file may be deleted only later).
    #[test]
    fn pack_numbers_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let entry = |n: u32| PackEntry {
            id: ChunkId::of(&n.to_le_bytes()),
            kind: BlobKind::Data,
            frame_offset: 16,
            frame_len: 40,
            offset: 0,
            len: 1,
        };
        let (a, b, c, d) = (
            PackId::of(b"a"),
            PackId::of(b"b"),
            PackId::of(b"c"),
            PackId::of(b"d"),
        );
        let no_of = |idx: &Index, p: PackId| {
            record::decode_pack(&idx.packs.get(p.0).unwrap().unwrap())
                .unwrap()
                .pack_no
        };
        {
            let (idx, _) = Index::open(&path, [1; 16]).unwrap();
            idx.add_pack(a, 10, &[entry(0)]).unwrap();
            idx.add_pack(b, 10, &[entry(1)]).unwrap();
            idx.mark_complete().unwrap();
        }
        let c_no = {
            let (idx, _) = Index::open(&path, [1; 16]).unwrap();
            let b_no = no_of(&idx, b);
            assert!(idx.contains(&entry(0).id).unwrap(), "builds the map");
            // b is the highest pack: its number must not come back.
            idx.remove_pack(b).unwrap();
            idx.add_pack(c, 10, &[entry(2)]).unwrap();
            let c_no = no_of(&idx, c);
            assert!(c_no > b_no, "{c_no} after {b_no}");
            assert!(idx.contains(&entry(2).id).unwrap());
            assert!(!idx.contains(&entry(1).id).unwrap());
            idx.remove_pack(c).unwrap();
            idx.flush().unwrap();
            c_no
        };
        let (idx, _) = Index::open(&path, [1; 16]).unwrap();
        idx.add_pack(d, 10, &[entry(3)]).unwrap();
        assert!(no_of(&idx, d) > c_no, "after the removed highest pack");
        assert!(idx.contains(&entry(3).id).unwrap());
        assert!(!idx.contains(&entry(2).id).unwrap());
    }

    /// A rebuild (clear, add, mark complete) leaves an index the next open
    /// trusts: the store id survives the clear.
    #[test]
    fn a_cleared_and_rebuilt_index_opens_ready() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let entry = PackEntry {
            id: ChunkId::of(b"x"),
            kind: BlobKind::Data,
            frame_offset: 16,
            frame_len: 40,
            offset: 0,
            len: 1,
        };
        {
            let (idx, _) = Index::open(&path, [3; 16]).unwrap();
            idx.add_pack(PackId::of(b"p"), 10, &[entry]).unwrap();
            idx.mark_complete().unwrap();
            idx.clear().unwrap();
            idx.add_pack(PackId::of(b"p"), 10, &[entry]).unwrap();
            idx.mark_complete().unwrap();
        }
        let (idx, state) = Index::open(&path, [3; 16]).unwrap();
        assert_eq!(state, IndexState::Ready);
        assert!(idx.contains(&entry.id).unwrap());
    }

    /// An index of the layout before version 4 (sled directly in the
    /// index directory) is thrown away and rebuilt.
    #[test]
    fn old_layout_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        {
            let db = sled::Config::new().path(&path).open().unwrap();
            db.insert("x", "y").unwrap();
            db.flush().unwrap();
        }
        assert!(path.join("conf").exists());
        let (idx, state) = Index::open(&path, [1; 16]).unwrap();
        assert_eq!(state, IndexState::NeedsRebuild);
        assert!(!path.join("conf").exists());
        assert!(path.join("sled").is_dir());
        drop(idx);
    }
}
