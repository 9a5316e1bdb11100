//! The one interface every store location offers: named, immutable-ish
//! objects that are listed, read whole or by byte range, written
//! atomically and deleted.

use std::ops::Range;
use std::time::Duration;

use crate::error::Result;

/// One object found by [`Backend::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its name below the listed prefix (`<id>.pack` for `packs/`).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// How hard a remote backend tries before a transient error (a dropped
/// connection, a 5xx, a timeout) is reported.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: usize,
    /// The first backoff; it doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
    /// No retry starts after this long.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(8),
            timeout: Duration::from_secs(120),
        }
    }
}

/// A place objects live: a directory or a bucket and prefix. Object names
/// are `/`-separated relative paths (`config`, `packs/<id>.pack`).
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Where this is, for messages: a path or `s3://bucket/prefix`.
    fn location(&self) -> String;
    /// Where the object `name` is, for messages.
    fn object_location(&self, name: &str) -> String {
        format!("{}/{name}", self.location().trim_end_matches('/'))
    }
    /// Whether this is object storage (reads cost a request each).
    fn is_remote(&self) -> bool;
    /// The whole object. [`RemoteError::NotFound`](crate::RemoteError::NotFound) if absent.
    fn get(&self, name: &str) -> Result<Vec<u8>>;
    /// A byte range of the object.
    fn get_range(&self, name: &str, range: Range<u64>) -> Result<Vec<u8>>;
    /// The object's size, or `None` if absent.
    fn size(&self, name: &str) -> Result<Option<u64>>;
    /// Writes the object atomically, replacing any object of that name.
    fn put(&self, name: &str, bytes: Vec<u8>) -> Result<()>;
    /// Writes the object atomically unless one of that name exists;
    /// returns whether it was written.
    fn put_new(&self, name: &str, bytes: Vec<u8>) -> Result<bool>;
    /// Every object whose name starts with `dir/`, named relative to it,
    /// in no particular order. An absent directory lists as empty.
    fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>>;
    /// Deletes the object; an absent one is not an error.
    fn delete(&self, name: &str) -> Result<()>;
    /// Makes sure the directory `name` exists where directories exist (a
    /// local store needs `packs/` even when empty); object storage has
    /// none, so this does nothing there.
    fn create_dir(&self, _name: &str) -> Result<()> {
        Ok(())
    }
}
