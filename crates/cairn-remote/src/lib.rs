//! Where a cairn store lives and how its named objects are moved: a local
//! directory or S3-compatible object storage, behind one small
//! [`Backend`] trait. This crate knows nothing of packs or manifests; it
//! reads and writes opaque objects named like `packs/<id>.pack`.
//!
//! Local writes are atomic (temp file, fsync, rename, fsync of the
//! directory, see [`atomic`]); an object store's PUT is atomic by itself
//! (an interrupted upload leaves no object behind).
#![deny(missing_docs)]

pub mod atomic;
mod backend;
mod error;
mod local;
mod location;
mod s3;

pub use backend::{Backend, ObjectInfo, RetryPolicy};
pub use error::{IoAt, RemoteError, Result};
pub use local::LocalDir;
pub use location::{resolved, Location, S3Flags, S3Settings};
pub use s3::S3Bucket;

/// Opens the backend for `location`.
pub fn open(location: &Location, retry: &RetryPolicy) -> Result<std::sync::Arc<dyn Backend>> {
    Ok(match location {
        Location::Local(path) => std::sync::Arc::new(LocalDir::new(path)),
        Location::S3(s) => std::sync::Arc::new(S3Bucket::connect(s, retry)?),
    })
}
