//! The store's files as they are on disk, read without the store lock:
//! config, pack files and their trailers, manifests. Everything here is
//! immutable once written (packs and manifests are only ever added or
//! removed whole), which is what lets `prune` plan while snapshots run.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use cairn_format::pack::{self, PackTrailer};
use cairn_format::{Manifest, PackId, SnapshotId, StoreConfig};

use crate::error::{FormatContext, IoContext, Result, StoreError};

/// A store's root and config, and read access to its packs and manifests.
#[derive(Clone, Debug)]
pub struct StoreFiles {
    root: PathBuf,
    config: StoreConfig,
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
            config,
        })
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
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
        let path = self.manifest_path(id);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::UnknownSnapshot { id: id.to_string() })
            }
            Err(e) => return Err(e).at(&path),
        };
        let m = Manifest::decode(&bytes).what(format!("snapshot {id}"))?;
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
}
