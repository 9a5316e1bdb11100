//! Snapshot manifests, directory tree nodes and chunk-list nodes.
//!
//! A snapshot is a small manifest file naming one root tree per source
//! root (data path, a db outside it, an archive path). Trees and chunk
//! lists are stored as `Meta` chunks in packs, addressed by their hash, so
//! an unchanged directory or an unchanged stretch of a file's chunk list
//! is the same chunk in every snapshot and is stored once: a snapshot's new
//! metadata is proportional to what changed, not to the data size.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::envelope::{self, Kind};
use crate::{ChunkId, FormatError, SnapshotId};

/// Manifests: version 2 since deltas and listed DuckDB files.
const MANIFEST: Kind = Kind {
    magic: *b"CSNP",
    version: 2,
    name: "snapshot manifest",
};
/// Tree nodes: version 2 when an entry's content is a
/// [`ContentLayout::Delta`] or [`ContentLayout::DuckDbListed`], else 1
/// (an unchanged node keeps its bytes, so its id, across the upgrade); a
/// cairn that predates them refuses them clearly (newer version) rather
/// than misreading them.
const TREE: Kind = Kind {
    magic: *b"CTRE",
    version: 2,
    name: "tree node",
};
/// File content records: versioned like tree nodes.
const FILE: Kind = Kind {
    magic: *b"CFIL",
    version: 2,
    name: "file content record",
};

/// `kind` at version 1 (the version before deltas and listed DuckDB
/// files) unless the object holds one of those.
fn versioned(kind: Kind, v2: bool) -> Kind {
    Kind {
        version: if v2 { kind.version } else { 1 },
        ..kind
    }
}
const LIST: Kind = Kind {
    magic: *b"CLST",
    version: 1,
    name: "chunk-list node",
};

/// Counters recorded with each snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotStats {
    /// Regular files in the snapshot.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Sum of file sizes.
    pub logical_bytes: u64,
    /// Files taken from the parent without reading them.
    pub files_unchanged: u64,
    /// Bytes read from the sources.
    pub bytes_read: u64,
    /// New data chunks stored.
    pub new_chunks: u64,
    /// Raw bytes of new data chunks.
    pub new_data_bytes: u64,
    /// Raw bytes of new metadata chunks (trees, chunk lists).
    pub new_meta_bytes: u64,
    /// Bytes this snapshot added to packs (compressed, with framing).
    pub added_pack_bytes: u64,
    /// Packs written.
    pub new_packs: u64,
}

/// One source root of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRoot {
    /// What the root is, e.g. `data`, `db`, `archive`.
    pub label: String,
    /// The absolute path it was read from.
    pub path: String,
    /// Its root tree node, or `None` when the root is a single file
    /// (see `file`).
    pub tree: Option<ChunkId>,
    /// The root as a single entry, when it is a file (a db outside the data path).
    pub file: Option<TreeEntry>,
}

/// A snapshot manifest, `STORE/snapshots/<id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The snapshot's id (its start time).
    pub id: SnapshotId,
    /// The snapshot it was taken against, if any.
    pub parent: Option<SnapshotId>,
    /// Host that took it.
    pub hostname: String,
    /// cairn version that wrote it.
    pub cairn_version: String,
    /// Unix seconds when it finished.
    pub finished_unix: i64,
    /// The roots it holds.
    pub roots: Vec<SourceRoot>,
    /// Counters.
    pub stats: SnapshotStats,
    /// Free-form labels (room for later features).
    pub labels: BTreeMap<String, String>,
    /// The HitKeep boundary this snapshot captured, when taken as one.
    pub boundary: Option<Boundary>,
}

/// Where the archive directory was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArchiveLocation {
    /// A local directory, captured (inside the data path or as its own root).
    Local(String),
    /// An object-storage URL (`s3://...`): not captured, recorded and reported.
    External(String),
    /// The configured local directory did not exist.
    Missing(String),
}

/// One DuckDB file as captured.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbCapture {
    /// Path relative to its root.
    pub path: String,
    /// Root label it lives under.
    pub root: String,
    /// Size in bytes.
    pub size: u64,
    /// Live header iteration captured (0 when not a DuckDB file).
    pub iteration: u64,
    /// Whether a `.wal` was captured beside it.
    pub wal: bool,
}

/// One tenant in a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSummary {
    /// Tenant (team) id.
    pub id: String,
    /// Its database, if present.
    pub db: Option<DbCapture>,
    /// Archive files under `tenants/{id}/` in the archive directory.
    pub archive_files: u64,
    /// Their bytes.
    pub archive_bytes: u64,
    /// Sites seen in its archives.
    pub sites: Vec<String>,
}

/// The HitKeep boundary of a snapshot: what was captured, what was left
/// out, and how it compares with the parent's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Boundary {
    /// The control-plane database path.
    pub db_path: String,
    /// The data path.
    pub data_path: String,
    /// The archive directory.
    pub archive: Option<ArchiveLocation>,
    /// The control-plane database, if present.
    pub control_plane: Option<DbCapture>,
    /// Tenants with a database or archives.
    pub tenants: Vec<TenantSummary>,
    /// Default-tenant (flat layout) archive files and bytes.
    pub default_archive: (u64, u64),
    /// Asset files and bytes.
    pub assets: (u64, u64),
    /// Import files and bytes.
    pub imports: (u64, u64),
    /// Other files and bytes.
    pub other: (u64, u64),
    /// Transient files left out (paths relative to their root).
    pub excluded: Vec<String>,
    /// DuckDB files whose capture gave up (kept changing); not recorded.
    pub gave_up: Vec<String>,
    /// Completeness findings against the parent snapshot.
    pub findings: Vec<String>,
}

/// Manifest label marking an imported snapshot.
pub const LABEL_IMPORT: &str = "import";
/// Its value for HitKeep's built-in backups.
pub const IMPORT_HITKEEP_BACKUP: &str = "hitkeep-backup";

impl Manifest {
    /// Whether the snapshot is an import of HitKeep's built-in backups
    /// (its tree is the backup layout, not a data path).
    pub fn is_backup_import(&self) -> bool {
        self.labels.get(LABEL_IMPORT).map(String::as_str) == Some(IMPORT_HITKEEP_BACKUP)
    }

    /// Encodes the manifest file, always at version 2: its trees may
    /// hold version-2 nodes (deltas, listed DuckDB files), and a cairn that
    /// predates them should refuse the snapshot by name rather than find
    /// its directories damaged. Version 1 manifests read the same.
    pub fn encode(&self) -> Result<Vec<u8>, FormatError> {
        envelope::encode(MANIFEST, self)
    }

    /// Decodes a manifest file.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let m: Self = envelope::decode(MANIFEST, bytes)?.0;
        for r in &m.roots {
            if let Some(TreeEntry {
                kind: EntryKind::File(c),
                ..
            }) = &r.file
            {
                c.check_depth()?;
            }
        }
        Ok(m)
    }
}

/// File metadata restored with the file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryMeta {
    /// Permission bits (and file type bits as stat gives them).
    pub mode: u32,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Change time, nanoseconds since the epoch (unchanged-file check).
    pub ctime_ns: i64,
    /// Inode number (unchanged-file check).
    pub ino: u64,
    /// Device number (unchanged-file check).
    pub dev: u64,
}

/// How a file was split; readers need not care, writers reuse by it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContentLayout {
    /// One chunk, the whole file.
    Whole,
    /// FastCDC chunks.
    Cdc,
    /// DuckDB file: fixed chunks aligned to its blocks; the list has one
    /// leaf per block, and each leaf's `tag` is the block's own checksum.
    DuckDb {
        /// Block size read from the file (256 KiB by default).
        block_size: u32,
        /// The live database header's iteration when captured.
        iteration: u64,
    },
    /// A zstd patch against another file's content ([`crate::delta`]):
    /// the chunks are the patch, not the file. Rebuilding the file needs
    /// the base's content first (and its base's, down a chain of at most
    /// [`MAX_DELTA_DEPTH`]). Written by `import-hitkeep-backups`, each
    /// export file against the same file of the run before.
    Delta {
        /// A metadata chunk holding the base's [`FileContent`] record.
        base: ChunkId,
        /// 1 + the base's depth (0 for a base that is not a delta).
        depth: u32,
    },
    // After `Delta`: variants are encoded by position.
    /// A DuckDB file cut as [`DuckDb`](Self::DuckDb), whose `hash` is
    /// the hash of its chunk list ([`ChunkListHasher`]), not of its bytes:
    /// every chunk is checked against its id when read, so the file is
    /// checked without hashing its bytes a second time.
    DuckDbListed {
        /// Block size read from the file (256 KiB by default).
        block_size: u32,
        /// The live database header's iteration when captured.
        iteration: u64,
        /// Snapshots in a row, this one included, that took the blocks
        /// whose 8-byte head (DuckDB's block checksum) had not changed from
        /// the one before without reading them; 0 after a full read.
        partial: u32,
    },
}

impl ContentLayout {
    /// Block size and captured iteration of a DuckDB file, either kind.
    pub fn duckdb(&self) -> Option<(u32, u64)> {
        match *self {
            Self::DuckDb {
                block_size,
                iteration,
            }
            | Self::DuckDbListed {
                block_size,
                iteration,
                ..
            } => Some((block_size, iteration)),
            _ => None,
        }
    }

    /// Whether the file's `hash` is of its chunk list ([`ChunkListHasher`])
    /// rather than of its bytes.
    pub fn hash_is_of_list(&self) -> bool {
        matches!(self, Self::DuckDbListed { .. })
    }

    /// Whether an object holding this layout is written as version 2.
    fn needs_v2(&self) -> bool {
        matches!(self, Self::DuckDbListed { .. } | Self::Delta { .. })
    }
}

/// The hash of a file's chunk list: blake3 (in its key-derivation mode,
/// so it is never the hash of some bytes) over each data chunk's id and
/// length (u64 LE), in file order.
pub struct ChunkListHasher(blake3::Hasher);

impl Default for ChunkListHasher {
    fn default() -> Self {
        Self(blake3::Hasher::new_derive_key(
            "cairn 2026-11-26 chunk list of a file",
        ))
    }
}

impl ChunkListHasher {
    /// Adds the next data chunk.
    pub fn push(&mut self, id: &ChunkId, len: u64) {
        self.0.update(&id.0);
        self.0.update(&len.to_le_bytes());
    }

    /// The hash.
    pub fn finalize(&self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }
}

/// Longest chain of deltas a reader follows: a file `depth` deltas deep
/// costs `depth` patch applications to rebuild.
pub const MAX_DELTA_DEPTH: u32 = 32;

/// One child in a chunk list: a data chunk (in a leaf) or a list node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListChild {
    /// Chunk id (data chunk or list node).
    pub id: ChunkId,
    /// Content bytes covered.
    pub len: u64,
    /// Layout-specific tag: for DuckDB block leaves, the block's 8-byte
    /// checksum; 0 otherwise.
    pub tag: u64,
}

/// A node of a file's chunk list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListNode {
    /// 0 for leaves (children are data chunks), else the height.
    pub level: u8,
    /// Children in file order.
    pub children: Vec<ListChild>,
}

impl ListNode {
    /// Encodes the node as a metadata chunk.
    pub fn encode(&self) -> Result<Vec<u8>, FormatError> {
        envelope::encode(LIST, self)
    }

    /// Decodes a node.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        Ok(envelope::decode(LIST, bytes)?.0)
    }
}

/// A file's chunk list: inline for small files, else a tree of [`ListNode`]s.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkList {
    /// The data chunks themselves.
    Inline(Vec<ListChild>),
    /// Root of a list tree of the given level (children of a level-0 root are data).
    Tree {
        /// Root node id.
        root: ChunkId,
        /// Root node level.
        level: u8,
    },
}

/// A regular file's content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileContent {
    /// Size in bytes.
    pub size: u64,
    /// blake3 of the whole content.
    pub hash: [u8; 32],
    /// How it was split.
    pub layout: ContentLayout,
    /// Its chunks.
    pub chunks: ChunkList,
}

impl FileContent {
    /// Encodes the record (the index keeps it for whole-file dedup; a
    /// delta's base is stored as one).
    pub fn encode(&self) -> Result<Vec<u8>, FormatError> {
        envelope::encode(versioned(FILE, self.layout.needs_v2()), self)
    }

    /// Decodes a record.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let c: Self = envelope::decode(FILE, bytes)?.0;
        c.check_depth()?;
        Ok(c)
    }

    /// Whether the chunks are a patch against a base ([`ContentLayout::Delta`]).
    pub fn is_delta(&self) -> bool {
        matches!(self.layout, ContentLayout::Delta { .. })
    }

    /// The base record's chunk and this delta's depth, for a delta.
    pub fn delta_base(&self) -> Option<(ChunkId, u32)> {
        match self.layout {
            ContentLayout::Delta { base, depth } => Some((base, depth)),
            _ => None,
        }
    }

    fn check_depth(&self) -> Result<(), FormatError> {
        match self.delta_base() {
            Some((_, depth)) if depth == 0 || depth > MAX_DELTA_DEPTH => {
                Err(FormatError::Invalid {
                    what: "file content record",
                    detail: format!("delta depth {depth} outside 1..={MAX_DELTA_DEPTH}"),
                })
            }
            _ => Ok(()),
        }
    }
}

/// What a tree entry is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A regular file.
    File(FileContent),
    /// A directory and its tree node.
    Dir(ChunkId),
    /// A symbolic link and its target bytes.
    Symlink(Vec<u8>),
}

/// What an entry is to HitKeep, decided from its place in the layout.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EntryClass {
    /// Anything else (including directories).
    #[default]
    Other,
    /// The shared control-plane database (`hitkeep.db`).
    ControlPlaneDb,
    /// A team's analytics database, with the tenant id.
    TenantDb(String),
    /// A DuckDB write-ahead log; the tenant id, or `None` for the control plane.
    Wal(Option<String>),
    /// A Parquet retention archive: tenant (`None` for the default
    /// tenant's flat layout) and site.
    Archive {
        /// Tenant id, when the archive sits under `tenants/{id}/`.
        tenant: Option<String>,
        /// Site id from the file name.
        site: String,
    },
    /// A file under `assets/` (QR codes).
    Asset,
    /// A staged upload under `imports/`.
    Import,
}

/// One name in a directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeEntry {
    /// The name (bytes of the OS string; never contains `/` or NUL).
    pub name: Vec<u8>,
    /// Metadata.
    pub meta: EntryMeta,
    /// Content.
    pub kind: EntryKind,
    /// What the entry is to HitKeep.
    pub class: EntryClass,
}

impl TreeEntry {
    /// The name if it is a plain path component: not empty, `.`, `..`,
    /// and without `/` or NUL. Restore refuses anything else.
    pub fn safe_name(&self) -> Result<&[u8], FormatError> {
        let n = &self.name[..];
        if n.is_empty() || n == b"." || n == b".." || n.contains(&b'/') || n.contains(&0) {
            return Err(FormatError::Invalid {
                what: "tree entry",
                detail: format!("unsafe name {:?}", String::from_utf8_lossy(n)),
            });
        }
        Ok(n)
    }
}

/// A directory: its entries sorted by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeNode {
    /// Entries, sorted by name, names unique.
    pub entries: Vec<TreeEntry>,
}

impl TreeNode {
    /// Encodes the node as a metadata chunk.
    pub fn encode(&self) -> Result<Vec<u8>, FormatError> {
        let delta = self
            .entries
            .iter()
            .any(|e| matches!(&e.kind, EntryKind::File(c) if c.layout.needs_v2()));
        envelope::encode(versioned(TREE, delta), self)
    }

    /// Decodes a node and checks names are sorted and unique.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let node: Self = envelope::decode(TREE, bytes)?.0;
        if node.entries.windows(2).any(|w| w[0].name >= w[1].name) {
            return Err(FormatError::Invalid {
                what: "tree node",
                detail: "entries not sorted or not unique".into(),
            });
        }
        for e in &node.entries {
            if let EntryKind::File(c) = &e.kind {
                c.check_depth()?;
            }
        }
        Ok(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(layout: ContentLayout) -> FileContent {
        FileContent {
            size: 10,
            hash: [7; 32],
            layout,
            chunks: ChunkList::Inline(vec![ListChild {
                id: ChunkId::of(b"patch"),
                len: 5,
                tag: 0,
            }]),
        }
    }

    fn tree(c: FileContent) -> TreeNode {
        TreeNode {
            entries: vec![TreeEntry {
                name: b"f".to_vec(),
                meta: EntryMeta::default(),
                kind: EntryKind::File(c),
                class: EntryClass::Other,
            }],
        }
    }

    fn version(bytes: &[u8]) -> u16 {
        u16::from_le_bytes([bytes[4], bytes[5]])
    }

    #[test]
    fn objects_without_a_delta_keep_version_1_and_with_one_take_version_2() {
        let plain = content(ContentLayout::Cdc);
        let delta = content(ContentLayout::Delta {
            base: ChunkId::of(b"base record"),
            depth: 3,
        });
        let listed = content(ContentLayout::DuckDbListed {
            block_size: 262_144,
            iteration: 4,
            partial: 2,
        });
        for (c, want) in [(plain, 1), (delta, 2), (listed, 2)] {
            let rec = c.encode().unwrap();
            assert_eq!(version(&rec), want);
            assert_eq!(FileContent::decode(&rec).unwrap(), c);
            let node = tree(c);
            let bytes = node.encode().unwrap();
            assert_eq!(version(&bytes), want);
            assert_eq!(TreeNode::decode(&bytes).unwrap(), node);
        }
    }

    #[test]
    fn layouts_keep_their_encoding() {
        // Written by the delta layout's first build (fuzz seed): variants
        // are encoded by position, so a new one goes last.
        let seed = include_bytes!("../../../fuzz/corpus/file_content_decode/seed-delta");
        let c = FileContent::decode(seed).unwrap();
        assert_eq!(
            c.layout,
            ContentLayout::Delta {
                base: ChunkId::of(b"base record"),
                depth: 3
            }
        );
    }

    #[test]
    fn a_delta_depth_outside_the_chain_cap_is_refused() {
        for depth in [0, MAX_DELTA_DEPTH + 1, u32::MAX] {
            let c = content(ContentLayout::Delta {
                base: ChunkId::of(b"base record"),
                depth,
            });
            let err = FileContent::decode(&c.encode().unwrap()).unwrap_err();
            assert!(err.to_string().contains("delta depth"), "{err}");
            assert!(TreeNode::decode(&tree(c).encode().unwrap()).is_err());
        }
    }
}
