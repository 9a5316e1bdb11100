//! Errors of object access, each naming the object, bucket or endpoint.

use std::io;
use std::path::PathBuf;

/// A file system error with the path it happened on.
#[derive(Debug)]
pub struct IoAt {
    /// The path.
    pub path: PathBuf,
    /// The OS error.
    pub cause: io::Error,
}

/// Attaches a path to an `io::Result`.
pub(crate) trait AtPath<T> {
    fn at(self, path: impl Into<PathBuf>) -> std::result::Result<T, IoAt>;
}

impl<T> AtPath<T> for io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> std::result::Result<T, IoAt> {
        self.map_err(|cause| IoAt {
            path: path.into(),
            cause,
        })
    }
}

/// What went wrong reading or writing a store's objects.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The object does not exist.
    #[error("{location}: not found")]
    NotFound {
        /// The object's full location.
        location: String,
    },
    /// A local file operation failed.
    #[error("{}: {}", .0.path.display(), .0.cause)]
    Io(IoAt),
    /// The server refused the credentials.
    #[error("{location}: access denied (check the access key and secret key): {detail}")]
    Denied {
        /// The bucket or object.
        location: String,
        /// The server's words.
        detail: String,
    },
    /// The bucket does not exist.
    #[error("bucket {bucket} does not exist at {endpoint}")]
    NoBucket {
        /// The bucket.
        bucket: String,
        /// The endpoint asked.
        endpoint: String,
    },
    /// The server could not be reached (after retries).
    #[error("cannot reach {endpoint}: {detail}")]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// Why.
        detail: String,
    },
    /// Any other failed request.
    #[error("{location}: {detail}")]
    Request {
        /// The object or bucket.
        location: String,
        /// The error.
        detail: String,
    },
    /// A store location that cannot be used as given.
    #[error("{0}")]
    Usage(String),
}

impl From<IoAt> for RemoteError {
    fn from(e: IoAt) -> Self {
        if e.cause.kind() == io::ErrorKind::NotFound {
            return RemoteError::NotFound {
                location: e.path.display().to_string(),
            };
        }
        RemoteError::Io(e)
    }
}

/// A file system error at `path`, as a [`RemoteError`].
pub(crate) fn io_at(path: impl Into<PathBuf>, cause: io::Error) -> RemoteError {
    IoAt {
        path: path.into(),
        cause,
    }
    .into()
}

/// Result of object access.
pub type Result<T> = std::result::Result<T, RemoteError>;
