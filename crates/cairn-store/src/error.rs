//! Errors of the engine. Every variant names the path, snapshot, pack or
//! chunk involved, so the binary can print one clear line.

use std::io;
use std::path::PathBuf;

use cairn_format::FormatError;
use cairn_index::IndexError;

/// An engine error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No store config at the path.
    #[error("no cairn store at {path} (run `cairn init` first)")]
    NotAStore {
        /// The store path.
        path: PathBuf,
    },
    /// `init` on a path that already has content.
    #[error("{path} already exists and is not empty; refusing to create a store there")]
    AlreadyExists {
        /// The path.
        path: PathBuf,
    },
    /// A command that changes a store was given a remote one.
    #[error("{location} is a remote store: {what} works on a local store (remote stores are written by `cairn replicate`)")]
    RemoteReadOnly {
        /// The store's URL.
        location: String,
        /// What was refused.
        what: String,
    },
    /// A command that changes a store was given a local store this
    /// process may only read.
    #[error(
        "store {location} is read-only to this process ({reason}): {what} needs write access to it"
    )]
    StoreNotWritable {
        /// The store's path.
        location: String,
        /// What was refused.
        what: String,
        /// What is not writable.
        reason: String,
    },
    /// A path given (or restored to) lies in the store itself.
    #[error("{what} {path} is inside the store {store}")]
    InsideStore {
        /// What the path is (`restore target`, `data path`...).
        what: String,
        /// The path.
        path: PathBuf,
        /// The store's directory.
        store: PathBuf,
    },
    /// A local store this process may only read, and no cache directory
    /// to read it through.
    #[error("store {location} is read-only to this process, and reading it needs a cache directory: set --cache-dir or CAIRN_CACHE_DIR")]
    NoCacheDir {
        /// The store's path.
        location: String,
    },
    /// Reading or writing a remote store (or a replica) failed.
    #[error(transparent)]
    Remote(#[from] cairn_remote::RemoteError),
    /// A file system operation failed.
    // The cause is part of the message and deliberately not exposed as
    // `source()`, so an error chain printer does not repeat it.
    #[error("{path}: {cause}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        cause: io::Error,
    },
    /// Stored bytes did not decode.
    #[error("{what}: {cause}")]
    Format {
        /// What was being read (a path or an id).
        what: String,
        /// Why it did not decode.
        cause: FormatError,
    },
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A source path to snapshot does not exist.
    #[error("{what} {path} does not exist")]
    SourceMissing {
        /// What it was given as (`data path`, `control-plane database`...).
        what: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// No snapshot by that name.
    #[error("no snapshot {id} in the store")]
    UnknownSnapshot {
        /// The name asked for.
        id: String,
    },
    /// A snapshot with this id exists already.
    #[error("snapshot {id} already exists in the store")]
    SnapshotExists {
        /// The id.
        id: String,
    },
    /// A chunk a snapshot needs is in no pack.
    #[error("chunk {id} is missing from the store (needed by {context})")]
    ChunkMissing {
        /// Chunk id (hex).
        id: String,
        /// What needed it.
        context: String,
    },
    /// A chunk's bytes do not hash to its id, or its frame is damaged.
    #[error("chunk {id} in pack {pack} is damaged: {detail}")]
    ChunkDamaged {
        /// Chunk id (hex).
        id: String,
        /// Pack id (hex).
        pack: String,
        /// What is wrong.
        detail: String,
    },
    /// A restored file's content hash did not match.
    #[error("{path}: restored content does not match the snapshot's file hash")]
    FileHashMismatch {
        /// The file.
        path: PathBuf,
    },
    /// A manifest or tree holds a path that could escape the target.
    #[error("refusing unsafe path in snapshot: {detail}")]
    UnsafePath {
        /// What is unsafe.
        detail: String,
    },
    /// Restore into a non-empty directory without being told to.
    #[error("restore target {path} is not empty (pass --overwrite to restore into it)")]
    TargetNotEmpty {
        /// The target.
        path: PathBuf,
    },
    /// The target holds something of another kind where the snapshot puts
    /// a file, directory or symlink (a restore never follows a symlink).
    #[error("restore target holds {path}, a {found} where the snapshot has a {wanted}: move it away or restore elsewhere")]
    TargetConflict {
        /// What is in the way.
        path: PathBuf,
        /// What it is.
        found: crate::restore::PathKind,
        /// What the snapshot has there.
        wanted: crate::restore::PathKind,
    },
    /// One or more files failed during restore.
    #[error("{failed} of {total} files could not be restored; first: {first}")]
    RestoreIncomplete {
        /// Failed files.
        failed: usize,
        /// Files in the snapshot.
        total: usize,
        /// The first failure.
        first: String,
    },
    /// A source file kept changing while it was read.
    #[error("{path} kept changing while it was read ({tries} tries)")]
    SourceUnstable {
        /// The file.
        path: PathBuf,
        /// How often it was tried.
        tries: u32,
    },
    /// `--strict` and the boundary lost something against the parent.
    #[error("snapshot refused (--strict): {}", findings.join("; "))]
    Incomplete {
        /// The completeness problems.
        findings: Vec<String>,
    },
    /// A process holds a database the restore would replace.
    #[error(
        "{path} is open in process {pid} ({comm}): stop HitKeep before restoring (or pass --force)"
    )]
    InUse {
        /// The database.
        path: PathBuf,
        /// The holder's pid.
        pid: u32,
        /// The holder's command name.
        comm: String,
    },
    /// Invalid use.
    #[error("{0}")]
    Usage(String),
    /// Another process writes to the remote store (holds its lock object).
    #[error("store {location} is in use by {holder} (if that process is gone, `cairn --store {location} unlock` removes its lock)")]
    RemoteLocked {
        /// The store's URL.
        location: String,
        /// Who holds the lock, from its lock record.
        holder: Box<crate::lock::LockHolder>,
    },
    /// Another process has the store open (holds `STORE/lock`).
    #[error("store {} is in use by {holder}", path.display())]
    Locked {
        /// The store.
        path: PathBuf,
        /// Who holds the lock, from its lock record.
        holder: Box<crate::lock::LockHolder>,
    },
}

/// Shorthand.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Attaches a path to an I/O result.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|cause| StoreError::Io {
            path: path.into(),
            cause,
        })
    }
}

impl From<cairn_remote::IoAt> for StoreError {
    fn from(e: cairn_remote::IoAt) -> Self {
        StoreError::Io {
            path: e.path,
            cause: e.cause,
        }
    }
}

/// Attaches a description to a decode result.
pub(crate) trait FormatContext<T> {
    fn what(self, what: impl std::fmt::Display) -> Result<T>;
}

impl<T> FormatContext<T> for std::result::Result<T, FormatError> {
    fn what(self, what: impl std::fmt::Display) -> Result<T> {
        self.map_err(|cause| StoreError::Format {
            what: what.to_string(),
            cause,
        })
    }
}
