//! Memory-mapped file windows: the only `unsafe` code in cairn.
//!
//! # Invariants
//! Mapping a file is unsafe because another process may change or
//! truncate it while it is mapped: a change makes the mapped bytes change
//! under us, a truncation turns a read of the lost tail into SIGBUS.
//! cairn upholds this:
//! - only files that are not expected to shrink are mapped: windows are
//!   requested through [`crate::window::Access::Map`], which the engine
//!   chooses for write-once files (archives, assets) and never for DuckDB
//!   databases or WALs, which a live writer may truncate; those are read
//!   with `pread` into a buffer;
//! - a window never extends past the file length measured just before it
//!   is mapped;
//! - bytes read from a mapping are hashed and, when stored, copied and
//!   re-hashed first, and the file is stat'ed before and after reading, so
//!   a concurrent change is detected rather than stored under a wrong id.

use std::fs::File;
use std::io;
use std::ops::Deref;

/// A read-only mapping of `len` bytes of a file from `offset`.
pub(crate) struct MappedWindow {
    map: memmap2::Mmap,
}

impl MappedWindow {
    /// Maps `[offset, offset + len)` of `file`; the range must lie within
    /// the file's current length (checked here).
    pub(crate) fn new(file: &File, offset: u64, len: usize) -> io::Result<Self> {
        let file_len = file.metadata()?.len();
        if offset + len as u64 > file_len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being read",
            ));
        }
        // SAFETY: the range lies inside the file as it is now (checked
        // above); the callers only map files that are not truncated while
        // cairn reads them (see the module invariants), and never write.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(offset)
                .len(len)
                .map(file)?
        };
        #[cfg(unix)]
        {
            let _ = map.advise(memmap2::Advice::Sequential);
        }
        Ok(Self { map })
    }
}

impl Deref for MappedWindow {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map
    }
}
