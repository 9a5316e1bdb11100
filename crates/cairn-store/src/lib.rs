//! cairn's engine: a content-addressed, deduplicating snapshot store.
//!
//! Data flows one way: [`walk`] → [`ingest`] (read, chunk, hash) →
//! [`packer`] (dedup, compress, pack, index) → [`snapshot`] (trees,
//! manifest). [`restore`] reads it back through [`reader`], verifying
//! every chunk and every file. The [`Store`] owns the layout on disk and
//! keeps the sled index (a cache) in step with packs and manifests.
#![deny(missing_docs)]

use cairn_remote::atomic;
pub mod check;
pub mod delta;
pub mod drill;
mod error;
mod files;
pub mod forget;
mod gate;
pub mod hitkeep;
mod holes;
pub mod import;
mod ingest;
pub mod inuse;
pub mod lock;
mod mark;
mod packer;
pub mod prune;
pub mod purge;
pub mod reader;
pub mod recover;
pub mod repair;
pub mod replicate;
pub mod restore;
pub mod retention;
pub mod snapshot;
pub mod stats;
mod store;
mod sync_threads;
mod tree;
mod walk;
mod writeback;

pub use error::{Result, StoreError};
pub use files::StoreFiles;
pub use hitkeep::{ArchiveSpec, HitkeepPaths};
pub use lock::{LockHolder, LockOptions};
pub use restore::{RestoreOptions, RestorePlan, RestoreReport};
pub use snapshot::{NoProgress, Progress, SnapshotOptions, SnapshotReport, SourceSpec};
pub use store::{IndexSync, Store};

pub use cairn_format as format;
