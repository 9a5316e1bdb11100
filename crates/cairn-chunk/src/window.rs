//! Windows over a file: mapped where that is safe, read otherwise.
//!
//! Memory stays bounded by the window size whatever the file size: a
//! mapping is dropped (and its pages leave the process) before the next
//! window is taken, and a read window reuses one buffer.

use std::fs::File;
use std::io;
use std::ops::Deref;
use std::os::unix::fs::FileExt;

use crate::map::MappedWindow;

/// How a file is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Memory-mapped windows: for files that are not truncated while read.
    Map,
    /// `pread` into a reused buffer: for files a live writer may shrink.
    Read,
}

/// Bytes of one window.
pub enum WindowBytes<'a> {
    /// A mapping.
    Mapped(MappedWindowRef),
    /// A slice of the reader's buffer.
    Buffered(&'a [u8]),
}

/// An owned mapped window (opaque).
pub struct MappedWindowRef(MappedWindow);

impl Deref for WindowBytes<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            WindowBytes::Mapped(m) => &m.0,
            WindowBytes::Buffered(b) => b,
        }
    }
}

/// Reads windows of one open file.
pub struct FileWindows {
    file: File,
    access: Access,
    buf: Vec<u8>,
}

impl FileWindows {
    /// Wraps an open file.
    pub fn new(file: File, access: Access) -> Self {
        Self {
            file,
            access,
            buf: Vec::new(),
        }
    }

    /// How the file is read.
    pub fn access(&self) -> Access {
        self.access
    }

    /// The file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// `len` bytes from `offset`. Fails with `UnexpectedEof` if the file is
    /// shorter than that now.
    pub fn window(&mut self, offset: u64, len: usize) -> io::Result<WindowBytes<'_>> {
        if len == 0 {
            return Ok(WindowBytes::Buffered(&[]));
        }
        match self.access {
            Access::Map => Ok(WindowBytes::Mapped(MappedWindowRef(MappedWindow::new(
                &self.file, offset, len,
            )?))),
            Access::Read => {
                self.buf.resize(len, 0);
                self.file.read_exact_at(&mut self.buf, offset)?;
                Ok(WindowBytes::Buffered(&self.buf))
            }
        }
    }

    /// Reads exactly `buf.len()` bytes at `offset` (small reads, headers).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
}
