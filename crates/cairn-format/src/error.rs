//! The one error type of the format crate.

/// Why bytes could not be decoded (or, rarely, encoded).
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The bytes do not start with the magic of the expected object.
    #[error("not a {expected} (bad magic)")]
    BadMagic {
        /// What was expected, e.g. "pack file".
        expected: &'static str,
    },
    /// Written by a newer cairn than this one.
    #[error(
        "{what} has format version {found}, this cairn reads up to {supported}; upgrade cairn"
    )]
    NewerVersion {
        /// The object kind.
        what: &'static str,
        /// Version found in the bytes.
        found: u32,
        /// Highest version this build reads.
        supported: u32,
    },
    /// The bytes end before the object does, or a length field is out of range.
    #[error("{what} is truncated or has an impossible length")]
    Truncated {
        /// The object kind.
        what: &'static str,
    },
    /// A checksum over the object did not match.
    #[error("{what} checksum mismatch")]
    Checksum {
        /// The object kind.
        what: &'static str,
    },
    /// The payload did not decode.
    #[error("{what} does not decode: {detail}")]
    Decode {
        /// The object kind.
        what: &'static str,
        /// The decoder's message.
        detail: String,
    },
    /// A field holds a value that no valid writer produces.
    #[error("{what} is invalid: {detail}")]
    Invalid {
        /// The object kind.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// zstd failed to compress or decompress.
    #[error("{what}: zstd: {detail}")]
    Compression {
        /// The object kind.
        what: &'static str,
        /// zstd's message.
        detail: String,
    },
}
