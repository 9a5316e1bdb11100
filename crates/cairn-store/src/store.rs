//! An opened store: its layout on disk, its config, and its index kept in
//! step with the packs and manifests it caches.
//!
//! ```text
//! STORE/config               store config (envelope)
//! STORE/packs/<id>.pack      immutable packs, named by blake3 of content
//! STORE/snapshots/<id>       immutable manifests, named 2026-03-08T120000Z
//! STORE/index/               sled index: a cache, rebuilt when missing
//! STORE/tmp/                 temp files; never read, removed on open
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use cairn_format::pack::PackTrailer;
use cairn_format::{Manifest, PackId, SnapshotId, StoreConfig};
use cairn_index::{Index, IndexState};

use rayon::prelude::*;

use crate::atomic;
use crate::error::{FormatContext, IoContext, Result, StoreError};
use crate::files::StoreFiles;
use crate::lock::{LockOptions, StoreLock};

/// What [`Store::open`] or [`Store::rebuild_index`] did to the index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexSync {
    /// The index was rebuilt from scratch.
    pub rebuilt: bool,
    /// Packs found on disk and added.
    pub packs_added: usize,
    /// Snapshots added to the catalog.
    pub snapshots_added: usize,
    /// Snapshots dropped from the catalog (their manifest is gone).
    pub snapshots_dropped: usize,
    /// Packs whose trailer could not be read (left out of the index).
    pub unreadable_packs: Vec<(PackId, String)>,
    /// Packs the index listed that are gone from disk or changed size
    /// (the reason for a rebuild).
    pub vanished_packs: Vec<PackId>,
    /// The index could not be opened and was recreated; why.
    pub recreated: Option<String>,
}

/// An opened store.
pub struct Store {
    files: StoreFiles,
    index: Index,
    sync: IndexSync,
    // Last, so it is released after the index is closed.
    lock: StoreLock,
}

impl Store {
    /// Creates a new store at `path` (which must be absent or empty) with
    /// default parameters.
    pub fn init(path: &Path) -> Result<StoreConfig> {
        Self::init_with(path, |_| {})
    }

    /// Creates a new store, letting `adjust` change the default config
    /// (chunking parameters are fixed for the store's life).
    pub fn init_with(path: &Path, adjust: impl FnOnce(&mut StoreConfig)) -> Result<StoreConfig> {
        // The config first: a bad parameter leaves nothing behind.
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|e| StoreError::Usage(format!("no randomness: {e}")))?;
        let mut config = StoreConfig::new(id);
        adjust(&mut config);
        config
            .chunking
            .validate()
            .map_err(|e| StoreError::Usage(e.to_string()))?;
        let bytes = config.encode().what("store config")?;
        if path.exists() {
            let mut entries = fs::read_dir(path).at(path)?;
            if entries.next().is_some() {
                return Err(StoreError::AlreadyExists {
                    path: path.to_owned(),
                });
            }
        }
        fs::create_dir_all(path).at(path)?;
        for d in ["packs", "snapshots", "tmp"] {
            fs::create_dir_all(path.join(d)).at(path.join(d))?;
        }
        let _lock = StoreLock::acquire(path, &LockOptions::default())?;
        if path.join("config").exists() {
            // Another init got there first.
            return Err(StoreError::AlreadyExists {
                path: path.to_owned(),
            });
        }
        atomic::write_file(&path.join("tmp"), &path.join("config"), &bytes, false)?;
        atomic::sync_dir(path)?;
        let (index, _) = Index::open(&path.join("index"), config.store_id)?;
        index.mark_complete()?;
        Ok(config)
    }

    /// Opens the store at `path`, bringing its index in step with the packs
    /// and manifests (rebuilding it if it is missing or foreign). Fails with
    /// [`StoreError::Locked`] if another process has it open.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, &LockOptions::default())
    }

    /// [`open`](Self::open), taking the store lock as `lock` says (how long
    /// to wait for another process, the command to record).
    pub fn open_with(path: &Path, lock: &LockOptions) -> Result<Self> {
        Self::open_files(StoreFiles::open(path)?, lock)
    }

    /// Opens a store whose files are already located: a local store, or a
    /// remote one (whose index and lock then live in its cache directory,
    /// and which only reading commands may use).
    pub fn open_files(files: StoreFiles, lock: &LockOptions) -> Result<Self> {
        let config = files.config().clone();
        let path = files.root().to_owned();
        let path = path.as_path();
        let mut lock = StoreLock::acquire(path, lock)?;
        let tmp = path.join("tmp");
        fs::create_dir_all(&tmp).at(&tmp)?;
        lock.clear_temps(&tmp);
        let index_dir = path.join("index");
        let (index, state, recreated) = match Index::open(&index_dir, config.store_id) {
            Ok((index, state)) => (index, state, None),
            // The index is a cache: one that sled cannot open is thrown
            // away and rebuilt from packs and manifests.
            Err(e) => {
                let reason = e.to_string();
                fs::remove_dir_all(&index_dir).at(&index_dir)?;
                let (index, state) = Index::open(&index_dir, config.store_id)?;
                (index, state, Some(reason))
            }
        };
        let mut store = Self {
            files,
            index,
            sync: IndexSync::default(),
            lock,
        };
        store.sync = store.sync_index(state == IndexState::NeedsRebuild)?;
        store.sync.recreated = recreated;
        Ok(store)
    }

    /// The store's files, readable without the lock.
    pub fn files(&self) -> &StoreFiles {
        &self.files
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        self.files.root()
    }

    /// Refuses `path` (given as `what`) when it is the store or lies inside
    /// it: restored or snapshotted files must not mix with the store's own.
    ///
    /// Paths are compared resolved, and every existing directory on the
    /// way is compared with the store's directory by device and inode, so
    /// the store seen through a bind mount is the store too.
    pub(crate) fn refuse_inside(&self, what: &str, path: &Path) -> Result<()> {
        let store = self.files.store_dir();
        let path = cairn_remote::resolved(path);
        let through_mount = || {
            let is_store = self.store_dir_test();
            path.ancestors()
                .filter_map(|a| fs::metadata(a).ok())
                .any(|m| is_store(&m))
        };
        if path.starts_with(cairn_remote::resolved(store)) || through_mount() {
            return Err(StoreError::InsideStore {
                what: what.to_string(),
                path,
                store: store.to_owned(),
            });
        }
        Ok(())
    }

    /// A test of whether a directory's metadata is the store's own
    /// directory (same device and inode: also where it is seen through a
    /// bind mount). The store directory is looked at once, here.
    pub(crate) fn store_dir_test(&self) -> impl Fn(&fs::Metadata) -> bool {
        use std::os::unix::fs::MetadataExt;
        let store = fs::metadata(self.files.store_dir())
            .ok()
            .map(|s| (s.dev(), s.ino()));
        move |m| store == Some((m.dev(), m.ino()))
    }

    /// The config.
    pub fn config(&self) -> &StoreConfig {
        self.files.config()
    }

    /// The index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The store lock this process holds (its warnings about a stale lock
    /// cleared on open are for the user).
    pub fn lock(&self) -> &StoreLock {
        &self.lock
    }

    /// What opening did to the index.
    pub fn index_sync(&self) -> &IndexSync {
        &self.sync
    }

    /// The temp directory.
    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root().join("tmp")
    }

    /// Path of a pack.
    pub fn pack_path(&self, id: &PackId) -> PathBuf {
        self.files.pack_path(id)
    }

    fn manifest_path(&self, id: SnapshotId) -> PathBuf {
        self.files.manifest_path(id)
    }

    /// Every pack file on disk with its length.
    pub fn pack_files(&self) -> Result<BTreeMap<PackId, u64>> {
        self.files.pack_files()
    }

    /// Every manifest file on disk.
    pub fn manifest_ids(&self) -> Result<BTreeSet<SnapshotId>> {
        self.files.manifest_ids()
    }

    /// Reads and decodes a pack's trailer (and checks its header).
    pub fn read_trailer(&self, id: &PackId) -> Result<PackTrailer> {
        self.files.read_trailer(id)
    }

    /// Resolves `latest` or an id to an existing snapshot.
    pub fn resolve(&self, name: &str) -> Result<SnapshotId> {
        self.files.resolve(name)
    }

    /// Reads a manifest from its file (the truth, not the catalog).
    pub fn load_manifest(&self, id: SnapshotId) -> Result<Manifest> {
        self.files.load_manifest(id)
    }

    /// Brings the index in step with the store: packs on disk but not
    /// indexed are added; a pack indexed but gone forces a full rebuild;
    /// the catalog follows the manifests.
    fn sync_index(&self, from_scratch: bool) -> Result<IndexSync> {
        let mut report = IndexSync {
            rebuilt: from_scratch,
            ..IndexSync::default()
        };
        let on_disk = self.pack_files()?;
        if self.files.remote().is_some() {
            self.files.trim_pack_cache(&on_disk);
        }
        let mut indexed: BTreeMap<PackId, u64> = self.index.packs()?.into_iter().collect();
        report.vanished_packs = indexed
            .iter()
            .filter(|(id, len)| on_disk.get(*id) != Some(*len))
            .map(|(id, _)| *id)
            .collect();
        if !report.vanished_packs.is_empty() && !from_scratch {
            self.index.clear()?;
            report.rebuilt = true;
            indexed.clear();
        }
        let new: Vec<(&PackId, &u64)> = on_disk
            .iter()
            .filter(|(id, _)| !indexed.contains_key(*id))
            .collect();
        // A remote store's trailers cost requests: fetch them in parallel.
        let trailers: Vec<Result<PackTrailer>> = new
            .par_iter()
            .map(|(id, len)| self.files.read_listed_trailer(id, **len))
            .collect();
        for ((id, len), t) in new.into_iter().zip(trailers) {
            match t {
                Ok(t) => {
                    self.index.add_pack(*id, *len, &t.entries)?;
                    report.packs_added += 1;
                }
                Err(e) => report.unreadable_packs.push((*id, e.to_string())),
            }
        }
        let manifests = self.manifest_ids()?;
        let catalog = self.cataloged()?;
        let missing: Vec<SnapshotId> = manifests.difference(&catalog).copied().collect();
        let fetched: Vec<Result<Vec<u8>>> = missing
            .par_iter()
            .map(|id| self.files.manifest_bytes(*id))
            .collect();
        for (id, bytes) in missing.iter().zip(fetched) {
            let bytes = bytes?;
            // A damaged manifest stays out of the catalog; `load_manifest`
            // reports it by name when it is asked for.
            if Manifest::decode(&bytes).is_ok() {
                self.index.add_snapshot(*id, &bytes)?;
                report.snapshots_added += 1;
            }
        }
        for id in catalog.difference(&manifests) {
            self.index.remove_snapshot(*id)?;
            report.snapshots_dropped += 1;
        }
        if report.rebuilt || report.packs_added > 0 || report.snapshots_added > 0 {
            self.index.mark_complete()?;
        }
        Ok(report)
    }

    /// Throws the index away and rebuilds it from packs and manifests.
    pub fn rebuild_index(&mut self) -> Result<IndexSync> {
        self.index.clear()?;
        self.sync = self.sync_index(true)?;
        Ok(self.sync.clone())
    }

    /// Snapshots whose manifest file is there but cannot be decoded: left
    /// out of the catalog (and of [`Self::snapshots`]).
    pub fn unreadable_snapshots(&self) -> Result<Vec<SnapshotId>> {
        Ok(self
            .manifest_ids()?
            .difference(&self.cataloged()?)
            .copied()
            .collect())
    }

    /// The ids in the index's snapshot catalog.
    fn cataloged(&self) -> Result<BTreeSet<SnapshotId>> {
        Ok(self
            .index
            .snapshots()?
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    /// Every snapshot's manifest, oldest first (from the catalog).
    pub fn snapshots(&self) -> Result<Vec<Manifest>> {
        let mut out = Vec::new();
        for (id, bytes) in self.index.snapshots()? {
            out.push(Manifest::decode(&bytes).what(format!("snapshot {id} (index)"))?);
        }
        Ok(out)
    }

    /// Writes a new manifest (never replacing one) and catalogs it.
    pub(crate) fn write_manifest(&self, m: &Manifest) -> Result<()> {
        self.files.require_local("writing a snapshot")?;
        let bytes = m.encode().what(format!("snapshot {}", m.id))?;
        atomic::write_file(&self.tmp_dir(), &self.manifest_path(m.id), &bytes, false)?;
        self.index.add_snapshot(m.id, &bytes)?;
        self.index.flush()?;
        Ok(())
    }

    /// Removes a snapshot's manifest (durably) and its catalog entry. Its
    /// chunks stay in their packs until a prune.
    pub(crate) fn remove_manifest(&self, id: SnapshotId) -> Result<()> {
        self.files.require_local("removing a snapshot")?;
        let path = self.manifest_path(id);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).at(&path),
        }
        atomic::sync_dir(&self.root().join("snapshots"))?;
        self.index.remove_snapshot(id)?;
        Ok(())
    }

    /// Stores a report as `STORE/<kind>/<name>.txt` (`repairs`,
    /// `purges`), atomically.
    pub fn write_report(&self, kind: &str, name: &str, text: &str) -> Result<PathBuf> {
        self.files.require_local("storing a report")?;
        let dir = self.root().join(kind);
        fs::create_dir_all(&dir).at(&dir)?;
        let dest = dir.join(format!("{name}.txt"));
        atomic::write_file(&self.tmp_dir(), &dest, text.as_bytes(), true)?;
        Ok(dest)
    }

    /// A snapshot id for a snapshot starting at unix time `now`, unique and
    /// later than every existing one.
    pub(crate) fn next_snapshot_id(&self, now: i64) -> Result<SnapshotId> {
        let newest = self.manifest_ids()?.last().map_or(i64::MIN, |id| id.0);
        Ok(SnapshotId(now.max(newest.saturating_add(1))))
    }
}
