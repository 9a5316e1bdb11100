//! Reading files and cutting them into chunks.
//!
//! This crate knows nothing of stores: it turns a file into windows of
//! bytes ([`window`]) and windows into cut points ([`cdc`] for general
//! files, [`duckdb`] for DuckDB databases). Cut points are part of the
//! store format, so they are pinned by golden tests.
#![deny(missing_docs)]

pub mod cdc;
pub mod duckdb;
pub mod duckdb_check;
mod map;
pub mod window;

/// A chunk's place in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut {
    /// Offset from the start of the file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u32,
}

impl Cut {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.offset + u64::from(self.len)
    }
}
