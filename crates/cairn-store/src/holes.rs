//! Writing a restored file front to back with its all-zero pages left as
//! holes.
//!
//! A quarter of a HitKeep data path is 4 KiB pages of zeros (the unused
//! tail of DuckDB blocks). A file is restored into a new, empty file, where
//! any range never written reads as zeros, so skipping those pages gives a
//! file that reads byte for byte the same while the disk writes (and a
//! durable restore waits for) only the rest. DuckDB itself punches holes
//! into its files for freed blocks, so a sparse database is a state it
//! knows. Only whole pages at page-aligned offsets are skipped; the file's
//! length is set at the end, so trailing zeros read back too.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use cairn_format::id::is_zero;

/// The unit skipped when all zero: the page size of the usual filesystems.
const PAGE: usize = 4096;

/// Bytes gathered from small writes before they go to the file.
const GATHER: usize = 256 << 10;

/// Writes a new file's content in order, leaving all-zero pages unwritten.
pub(crate) struct HoleWriter<'f> {
    file: &'f File,
    /// Bytes not yet written; they start at file offset `pos`, which is
    /// page-aligned.
    pending: Vec<u8>,
    pos: u64,
    /// Bytes skipped as holes so far.
    skipped: u64,
}

impl<'f> HoleWriter<'f> {
    /// For `file`, which must be new and empty.
    pub fn new(file: &'f File) -> Self {
        Self {
            file,
            pending: Vec::new(),
            pos: 0,
            skipped: 0,
        }
    }

    /// Appends `bytes` to the file.
    pub fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        if !self.pending.is_empty() {
            // Top up the pending bytes to a page boundary first, so that
            // what follows starts aligned.
            let to_page = (PAGE - self.pending.len() % PAGE) % PAGE;
            let take = to_page.min(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if !self.pending.len().is_multiple_of(PAGE) {
                return Ok(()); // `bytes` is used up
            }
            if self.pending.len() + bytes.len() < GATHER {
                self.pending.extend_from_slice(bytes);
                return Ok(());
            }
            self.write_pending()?;
        }
        if bytes.len() < GATHER {
            self.pending.extend_from_slice(bytes);
            return Ok(());
        }
        // Aligned (nothing is pending) and large: whole pages straight
        // from `bytes`, the tail kept for later.
        let whole = bytes.len() / PAGE * PAGE;
        self.emit(&bytes[..whole])?;
        self.pending.extend_from_slice(&bytes[whole..]);
        Ok(())
    }

    /// Writes what is pending and sets the file's length, so trailing
    /// holes read back as zeros. Returns the bytes left as holes.
    pub fn finish(mut self) -> io::Result<u64> {
        self.write_pending()?;
        self.file.set_len(self.pos)?;
        Ok(self.skipped)
    }

    /// Writes everything pending: whole pages, except at the end of the
    /// file.
    fn write_pending(&mut self) -> io::Result<()> {
        let pending = std::mem::take(&mut self.pending);
        let result = self.emit(&pending);
        self.pending = pending;
        self.pending.clear();
        result
    }

    /// Writes `bytes` at `pos`, one write per run of pages holding data.
    /// `bytes` is whole pages except, at the very end of the file, a last
    /// partial one (always written when not all zero).
    fn emit(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut run_start = 0;
        let mut at = 0;
        while at < bytes.len() {
            let end = (at + PAGE).min(bytes.len());
            if is_zero(&bytes[at..end]) {
                if run_start < at {
                    self.file
                        .write_all_at(&bytes[run_start..at], self.pos + run_start as u64)?;
                }
                self.skipped += (end - at) as u64;
                run_start = end;
            }
            at = end;
        }
        if run_start < bytes.len() {
            self.file
                .write_all_at(&bytes[run_start..], self.pos + run_start as u64)?;
        }
        self.pos += bytes.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::os::unix::fs::MetadataExt;

    /// Pieces of a file: runs of zeros or of data, of any length.
    fn content() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec((any::<bool>(), 1usize..3 * PAGE), 0..40).prop_map(|runs| {
            let mut out = Vec::new();
            for (n, (zero, len)) in runs.into_iter().enumerate() {
                let fill = if zero { 0 } else { (n % 250 + 1) as u8 };
                out.extend(std::iter::repeat_n(fill, len));
            }
            out
        })
    }

    fn write_in_pieces(content: &[u8], cuts: &[usize]) -> (Vec<u8>, u64) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::create_new(&path).unwrap();
        let mut w = HoleWriter::new(&file);
        let mut at = 0;
        for &cut in cuts {
            let end = (at + cut).min(content.len());
            w.write_all(&content[at..end]).unwrap();
            at = end;
        }
        w.write_all(&content[at..]).unwrap();
        let skipped = w.finish().unwrap();
        (std::fs::read(&path).unwrap(), skipped)
    }

    proptest! {
        /// Whatever the pieces, the file reads back exactly as written.
        #[test]
        fn a_file_reads_back_as_written(
            content in content(),
            cuts in prop::collection::vec(0usize..2 * GATHER, 0..12),
        ) {
            let (back, skipped) = write_in_pieces(&content, &cuts);
            prop_assert_eq!(back.len(), content.len());
            prop_assert!(back == content, "content differs");
            let zero_pages = content
                .chunks(PAGE)
                .filter(|p| p.iter().all(|&b| b == 0))
                .map(|p| p.len() as u64)
                .sum::<u64>();
            prop_assert_eq!(skipped, zero_pages, "every all-zero page and nothing else is skipped");
        }
    }

    /// Zero pages take no space on disk (on a filesystem with holes, which
    /// every Linux one used here has).
    #[test]
    fn zero_pages_are_holes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::create_new(&path).unwrap();
        let mut w = HoleWriter::new(&file);
        let mut data = vec![0u8; 8 << 20];
        data[..PAGE].fill(7);
        w.write_all(&data).unwrap();
        w.write_all(&[0u8; 3 * PAGE]).unwrap();
        assert_eq!(w.finish().unwrap(), (8 << 20) + 2 * PAGE as u64);
        drop(file);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), (8 << 20) + 3 * PAGE as u64);
        assert!(
            meta.blocks() * 512 < 1 << 20,
            "{} bytes allocated for one page of data",
            meta.blocks() * 512
        );
        let back = std::fs::read(&path).unwrap();
        assert_eq!(&back[..PAGE], &[7u8; PAGE][..]);
        assert!(back[PAGE..].iter().all(|&b| b == 0));
    }
}
