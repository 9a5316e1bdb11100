//! On-disk formats of a cairn store.
//!
//! Everything cairn writes is defined here, and nothing here does file I/O:
//! ids ([`ChunkId`], [`PackId`], [`SnapshotId`]), the versioned [`envelope`]
//! that wraps every encoded object, the [`StoreConfig`], the [`pack`] file
//! layout, and the snapshot [`Manifest`] with its tree and chunk-list nodes.
//! Every decoder here takes untrusted bytes and must fail with a
//! [`FormatError`], never panic: they are the fuzz targets.
//! The byte-level description lives in ARCHITECTURE.md.
#![deny(missing_docs)]

pub mod config;
pub mod delta;
pub mod envelope;
mod error;
pub mod id;
pub mod manifest;
pub mod pack;

pub use config::{ChunkingParams, Compression, StoreConfig, FORMAT_VERSION};
pub use error::FormatError;
pub use id::{ChunkId, PackId, SnapshotId};
pub use manifest::{
    ArchiveLocation, Boundary, ChunkList, ChunkListHasher, ContentLayout, DbCapture, EntryClass,
    EntryKind, EntryMeta, FileContent, ListChild, ListNode, Manifest, SnapshotStats, SourceRoot,
    TenantSummary, TreeEntry, TreeNode, MAX_DELTA_DEPTH,
};
