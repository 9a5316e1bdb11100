//! The store's files, read without the store lock: config, pack files and
//! their trailers, manifests. Everything here is immutable once written
//! (packs and manifests are only ever added or removed whole), which is
//! what lets `prune` plan while snapshots run.
//!
//! A local store is read with plain file calls. A remote store (object
//! storage) is read through its [`Backend`], by whole objects or byte
//! ranges; its local state (the index cache, the lock of that cache) lives
//! in a cache directory named by the store id, which [`root`] then names.
//! A local store this process may not write is read like a remote one,
//! through a `LocalDir` backend.
//!
//! [`root`]: StoreFiles::root

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_remote::{Backend, RemoteError};

use cairn_format::pack::{self, PackTrailer};
use cairn_format::{Manifest, PackId, SnapshotId, StoreConfig};

use crate::error::{FormatContext, IoContext, Result, StoreError};

/// A store's root and config, and read access to its packs and manifests.
#[derive(Clone, Debug)]
pub struct StoreFiles {
    root: PathBuf,
    config: StoreConfig,
    remote: Option<Arc<dyn Backend>>,
    /// Where the store's own files are: the local store's directory (also
    /// when it is read through the cache), a remote store's cache.
    store_dir: PathBuf,
    /// Why this process may not write this local store (it is then read
    /// through `remote`, a `LocalDir`).
    read_only: Option<String>,
}

/// How many bytes of a remote pack's end are fetched at once to find its
/// trailer (one request for most packs).
const TAIL_FETCH: u64 = 256 * 1024;

/// Where a remote store's metadata packs are kept in its cache directory.
pub(crate) const PACK_CACHE: &str = "pack-cache";

/// Object names inside a store.
pub(crate) fn pack_name(id: &PackId) -> String {
    format!("packs/{}.pack", id.to_hex())
}

pub(crate) fn manifest_name(id: SnapshotId) -> String {
    format!("snapshots/{id}")
}

impl StoreFiles {
    /// Reads the config of the store at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let cfg_path = path.join("config");
        let bytes = match fs::read(&cfg_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NotAStore {
                    path: path.to_owned(),
                })
            }
            Err(e) => return Err(e).at(&cfg_path),
        };
        let config = StoreConfig::decode(&bytes).what(cfg_path.display())?;
        Ok(Self {
            root: path.to_owned(),
            store_dir: path.to_owned(),
            config,
            remote: None,
            read_only: None,
        })
    }

    /// Reads the config of the store `backend` holds; its local state goes
    /// to `cache/<store id>-<place>/`, `<place>` naming where it is (16 hex
    /// digits of the blake3 of its location), so each replica of a store
    /// (two buckets, a read-only local copy) keeps an index of its own.
    pub fn open_remote(backend: Arc<dyn Backend>, cache: &Path) -> Result<Self> {
        let bytes = match backend.get("config") {
            Ok(b) => b,
            Err(RemoteError::NotFound { .. }) => {
                return Err(StoreError::NotAStore {
                    path: PathBuf::from(backend.location()),
                })
            }
            Err(e) => return Err(e.into()),
        };
        let config = StoreConfig::decode(&bytes).what(backend.object_location("config"))?;
        let place = blake3::hash(backend.location().as_bytes()).to_hex();
        let root = cache.join(format!("{}-{}", hex::encode(config.store_id), &place[..16]));
        let tmp = root.join("tmp");
        fs::create_dir_all(&tmp).at(&tmp)?;
        Ok(Self {
            store_dir: root.clone(),
            root,
            config,
            remote: Some(backend),
            read_only: None,
        })
    }

    /// Opens the local store at `path`. One this process may not write
    /// (see [`read_only_reason`](Self::read_only_reason)) is read the way a
    /// remote store is: its files through the local backend, its index and
    /// lock in `cache/<store id>-<place>/` (`cache` is needed only then). Commands
    /// that change a store refuse it, saying why.
    pub fn open_local(path: &Path, cache: Option<&Path>) -> Result<Self> {
        let Some(reason) = Self::read_only_reason(path) else {
            return Self::open(path);
        };
        let Some(cache) = cache else {
            return Err(StoreError::NoCacheDir {
                location: path.display().to_string(),
            });
        };
        let backend = Arc::new(cairn_remote::LocalDir::new(path));
        let mut files = Self::open_remote(backend, cache)?;
        files.store_dir = path.to_owned();
        files.read_only = Some(reason);
        Ok(files)
    }

    /// Why this process may not write the local store at `path`, if it may
    /// not: the store directory, one of its directories or its lock file is
    /// not writable to it (permissions, a read-only mount). `None` for a
    /// store it may write, and for a path that is no store (opening it
    /// then says so).
    pub fn read_only_reason(path: &Path) -> Option<String> {
        use rustix::fs::{access, Access};
        if !path.join("config").exists() {
            return None;
        }
        let parts = [
            "",
            crate::lock::LOCK_FILE,
            "index",
            "tmp",
            "packs",
            "snapshots",
        ];
        parts.iter().find_map(|part| {
            let p = path.join(part);
            match access(&p, Access::WRITE_OK) {
                Err(e) if e == rustix::io::Errno::NOENT => None,
                Err(e) => Some(format!(
                    "{} is not writable: {}",
                    p.display(),
                    std::io::Error::from(e)
                )),
                Ok(()) => None,
            }
        })
    }

    /// The store root; for a remote store, its local cache directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the store's own files are: the local store's directory (also
    /// one read through the cache because this process may not write it);
    /// for a remote store, its cache directory.
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// The backend of a remote store.
    pub fn remote(&self) -> Option<&Arc<dyn Backend>> {
        self.remote.as_ref()
    }

    /// Where the store is, for messages: its path or URL.
    pub fn location(&self) -> String {
        match &self.remote {
            Some(b) => b.location(),
            None => self.root.display().to_string(),
        }
    }

    /// Fails for a local store this process may only read: `what` writes
    /// to the store (remote stores are written by replicate, forget and
    /// prune).
    pub fn require_writable(&self, what: &str) -> Result<()> {
        match &self.read_only {
            Some(reason) => Err(not_writable(self.location(), what, reason.clone())),
            None => Ok(()),
        }
    }

    /// Fails, saying why, when this process may not write the local store
    /// at `path` (checked before the store is opened, so nothing is built
    /// in the cache for a command that would be refused).
    pub fn require_writable_at(path: &Path, what: &str) -> Result<()> {
        match Self::read_only_reason(path) {
            Some(reason) => Err(not_writable(path.display().to_string(), what, reason)),
            None => Ok(()),
        }
    }

    /// Fails for a remote store: `what` changes a store, and cairn changes
    /// remote stores only by replicating to them.
    pub fn require_local(&self, what: &str) -> Result<()> {
        self.require_writable(what)?;
        match &self.remote {
            None => Ok(()),
            Some(b) => Err(StoreError::RemoteReadOnly {
                location: b.location(),
                what: what.to_string(),
            }),
        }
    }

    /// The config.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub(crate) fn manifest_path(&self, id: SnapshotId) -> PathBuf {
        self.root.join("snapshots").join(id.to_string())
    }

    /// Path of a pack.
    pub fn pack_path(&self, id: &PackId) -> PathBuf {
        self.root
            .join("packs")
            .join(format!("{}.pack", id.to_hex()))
    }

    /// Every pack file on disk with its length.
    pub fn pack_files(&self) -> Result<BTreeMap<PackId, u64>> {
        if let Some(b) = &self.remote {
            return Ok(b
                .list("packs")?
                .into_iter()
                .filter_map(|o| {
                    let id = o.name.strip_suffix(".pack")?.parse::<PackId>().ok()?;
                    Some((id, o.size))
                })
                .collect());
        }
        let dir = self.root.join("packs");
        let mut out = BTreeMap::new();
        for e in fs::read_dir(&dir).at(&dir)? {
            let e = e.at(&dir)?;
            let name = e.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".pack")) else {
                continue;
            };
            let Ok(id) = hex.parse::<PackId>() else {
                continue;
            };
            out.insert(id, e.metadata().at(e.path())?.len());
        }
        Ok(out)
    }

    /// Every manifest file on disk.
    pub fn manifest_ids(&self) -> Result<BTreeSet<SnapshotId>> {
        if let Some(b) = &self.remote {
            return Ok(b
                .list("snapshots")?
                .into_iter()
                .filter_map(|o| o.name.parse().ok())
                .collect());
        }
        let dir = self.root.join("snapshots");
        let mut out = BTreeSet::new();
        for e in fs::read_dir(&dir).at(&dir)? {
            let e = e.at(&dir)?;
            if let Some(id) = e.file_name().to_str().and_then(|n| n.parse().ok()) {
                out.insert(id);
            }
        }
        Ok(out)
    }

    /// Reads and decodes a pack's trailer (and checks its header).
    pub fn read_trailer(&self, id: &PackId) -> Result<PackTrailer> {
        if let Some(b) = &self.remote {
            let name = pack_name(id);
            let len = b.size(&name)?.ok_or_else(|| RemoteError::NotFound {
                location: b.object_location(&name),
            })?;
            return self.read_remote_trailer(b.as_ref(), id, len);
        }
        let path = self.pack_path(id);
        let f = File::open(&path).at(&path)?;
        let len = f.metadata().at(&path)?.len();
        let mut header = [0u8; pack::HEADER_LEN as usize];
        let mut footer = [0u8; pack::FOOTER_LEN as usize];
        if len < pack::HEADER_LEN + pack::FOOTER_LEN {
            return Err(cairn_format::FormatError::Truncated { what: "pack" })
                .what(format!("pack {id}"));
        }
        f.read_exact_at(&mut header, 0).at(&path)?;
        pack::check_header(&header).what(format!("pack {id}"))?;
        f.read_exact_at(&mut footer, len - pack::FOOTER_LEN)
            .at(&path)?;
        let (off, tlen) = pack::trailer_location(len, &footer).what(format!("pack {id}"))?;
        let mut trailer = vec![0u8; tlen as usize];
        f.read_exact_at(&mut trailer, off).at(&path)?;
        pack::decode_trailer(&trailer, off).what(format!("pack {id}"))
    }

    /// [`read_trailer`](Self::read_trailer) of a pack whose length the
    /// listing gave (a remote store then needs no HEAD request).
    pub(crate) fn read_listed_trailer(&self, id: &PackId, len: u64) -> Result<PackTrailer> {
        match &self.remote {
            Some(b) => self.read_remote_trailer(b.as_ref(), id, len),
            None => self.read_trailer(id),
        }
    }

    /// [`read_trailer`](Self::read_trailer) of a remote pack of known
    /// length: its header, then its tail (one request unless the trailer
    /// is longer than [`TAIL_FETCH`]).
    pub(crate) fn read_remote_trailer(
        &self,
        b: &dyn Backend,
        id: &PackId,
        len: u64,
    ) -> Result<PackTrailer> {
        let name = pack_name(id);
        let what = || format!("pack {id}");
        if len < pack::HEADER_LEN + pack::FOOTER_LEN {
            return Err(cairn_format::FormatError::Truncated { what: "pack" }).what(what());
        }
        let header = b.get_range(&name, 0..pack::HEADER_LEN)?;
        pack::check_header(&header).what(what())?;
        let tail_start = len.saturating_sub(TAIL_FETCH).max(pack::HEADER_LEN);
        let tail = b.get_range(&name, tail_start..len)?;
        let footer = &tail[tail.len() - pack::FOOTER_LEN as usize..];
        let (off, tlen) = pack::trailer_location(len, footer).what(what())?;
        let trailer = if off >= tail_start {
            let start = (off - tail_start) as usize;
            tail[start..start + tlen as usize].to_vec()
        } else {
            b.get_range(&name, off..off + tlen)?
        };
        pack::decode_trailer(&trailer, off).what(what())
    }

    /// `len` bytes of a pack from `offset` (a frame, for the reader).
    pub fn read_pack_range(&self, id: &PackId, offset: u64, len: u64) -> Result<Vec<u8>> {
        if let Some(b) = &self.remote {
            return Ok(b.get_range(&pack_name(id), offset..offset + len)?);
        }
        let path = self.pack_path(id);
        let f = File::open(&path).at(&path)?;
        let mut buf = vec![0u8; len as usize];
        f.read_exact_at(&mut buf, offset).at(&path)?;
        Ok(buf)
    }

    /// A frame for the reader. A remote store's metadata packs (trees and
    /// chunk lists, read one small node at a time by every command) are
    /// fetched whole once, checked against their name, and kept in the
    /// cache directory; other frames are ranged reads.
    pub(crate) fn read_frame(
        &self,
        pack: &PackId,
        kind: cairn_format::pack::BlobKind,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>> {
        let Some(b) = &self.remote else {
            return self.read_pack_range(pack, offset, len);
        };
        if kind != cairn_format::pack::BlobKind::Meta {
            return Ok(b.get_range(&pack_name(pack), offset..offset + len)?);
        }
        let path = self
            .root
            .join(PACK_CACHE)
            .join(format!("{}.pack", pack.to_hex()));
        if !path.exists() {
            let bytes = b.get(&pack_name(pack))?;
            if PackId::of(&bytes) != *pack {
                return Err(StoreError::Usage(format!(
                    "{} does not match its name (damaged)",
                    b.object_location(&pack_name(pack))
                )));
            }
            let dir = self.root.join(PACK_CACHE);
            fs::create_dir_all(&dir).at(&dir)?;
            crate::atomic::write_file(&self.root.join("tmp"), &path, &bytes, true)?;
        }
        let f = File::open(&path).at(&path)?;
        let mut buf = vec![0u8; len as usize];
        f.read_exact_at(&mut buf, offset).at(&path)?;
        Ok(buf)
    }

    /// Drops cached metadata packs the remote store no longer has.
    pub(crate) fn trim_pack_cache(&self, packs: &BTreeMap<PackId, u64>) {
        let dir = self.root.join(PACK_CACHE);
        let Ok(entries) = fs::read_dir(&dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let keep = name
                .to_str()
                .and_then(|n| n.strip_suffix(".pack"))
                .and_then(|h| h.parse::<PackId>().ok())
                .is_some_and(|id| packs.contains_key(&id));
            if !keep {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    /// A whole pack's bytes.
    pub fn read_pack(&self, id: &PackId) -> Result<Vec<u8>> {
        if let Some(b) = &self.remote {
            return Ok(b.get(&pack_name(id))?);
        }
        let path = self.pack_path(id);
        fs::read(&path).at(&path)
    }

    /// Bytes of the manifests and the config.
    pub fn metadata_bytes(&self) -> Result<u64> {
        if let Some(b) = &self.remote {
            let manifests: u64 = b.list("snapshots")?.iter().map(|o| o.size).sum();
            return Ok(manifests + b.size("config")?.unwrap_or(0));
        }
        let mut total = 0;
        let dir = self.root.join("snapshots");
        for e in fs::read_dir(&dir).at(&dir)? {
            total += e.at(&dir)?.metadata().at(&dir)?.len();
        }
        let config = self.root.join("config");
        Ok(total + fs::metadata(&config).at(&config)?.len())
    }

    /// The config's stored bytes.
    pub fn config_bytes(&self) -> Result<Vec<u8>> {
        match &self.remote {
            Some(b) => Ok(b.get("config")?),
            None => {
                let path = self.root.join("config");
                fs::read(&path).at(&path)
            }
        }
    }

    /// A manifest's stored bytes.
    pub fn manifest_bytes(&self, id: SnapshotId) -> Result<Vec<u8>> {
        let found = match &self.remote {
            Some(b) => match b.get(&manifest_name(id)) {
                Ok(bytes) => Some(bytes),
                Err(RemoteError::NotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            },
            None => {
                let path = self.manifest_path(id);
                match fs::read(&path) {
                    Ok(b) => Some(b),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(e).at(&path),
                }
            }
        };
        found.ok_or_else(|| StoreError::UnknownSnapshot { id: id.to_string() })
    }

    /// Resolves `latest` or an id to an existing snapshot. `latest` is the
    /// newest snapshot of a data path (imports of HitKeep's backups are
    /// passed over), or the newest import when there is nothing else.
    pub fn resolve(&self, name: &str) -> Result<SnapshotId> {
        let ids = self.manifest_ids()?;
        if name == "latest" {
            for id in ids.iter().rev() {
                match self.load_manifest(*id) {
                    Ok(m) if m.is_backup_import() => continue,
                    _ => return Ok(*id),
                }
            }
            return ids.last().copied().ok_or(StoreError::UnknownSnapshot {
                id: "latest (the store has no snapshots)".into(),
            });
        }
        let id: SnapshotId = name.parse().map_err(|_| StoreError::UnknownSnapshot {
            id: format!("{name:?} (ids look like 2026-03-08T120000Z, or use latest)"),
        })?;
        if ids.contains(&id) {
            Ok(id)
        } else {
            Err(StoreError::UnknownSnapshot { id: name.into() })
        }
    }

    /// Reads a manifest from its file (the truth, not the catalog).
    pub fn load_manifest(&self, id: SnapshotId) -> Result<Manifest> {
        decode_manifest(id, &self.manifest_bytes(id)?)
    }
}

/// Decodes the stored bytes of manifest `id`, checking they hold that
/// snapshot.
pub(crate) fn decode_manifest(id: SnapshotId, bytes: &[u8]) -> Result<Manifest> {
    let m = Manifest::decode(bytes).what(format!("snapshot {id}"))?;
    if m.id != id {
        return Err(StoreError::Format {
            what: format!("snapshot {id}"),
            cause: cairn_format::FormatError::Invalid {
                what: "snapshot manifest",
                detail: format!("file holds snapshot {}", m.id),
            },
        });
    }
    Ok(m)
}

/// The refusal of `what` on the store at `location`, which this process
/// may not write because `reason`.
fn not_writable(location: String, what: &str, reason: String) -> StoreError {
    StoreError::StoreNotWritable {
        location,
        what: what.to_string(),
        reason,
    }
}
