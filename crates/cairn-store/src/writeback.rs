//! Early writeback of a file being written: an fdatasync of what it holds
//! so far, started on a thread every [`EARLY_SYNC_EVERY`] bytes.
//!
//! Without it the kernel keeps a file's pages dirty until the final fsync,
//! which then writes everything while the caller waits; with it the disk
//! writes while the caller computes, and the final fsync has little left.
//! Used for packs as they fill and for files a durable restore writes.

use std::fs::File;
use std::io;
use std::thread::JoinHandle;

/// Bytes written after which the next early sync starts.
pub(crate) const EARLY_SYNC_EVERY: u64 = 8 << 20;

/// Early syncs of one file, at most one running at a time.
pub(crate) struct Writeback {
    file: File,
    /// Length of the file when the last sync started.
    started_at: u64,
    running: Option<JoinHandle<io::Result<()>>>,
    /// A sync failed: every later wait fails too (the kernel may have
    /// marked the pages clean, so a later fsync would wrongly succeed).
    failed: Option<io::ErrorKind>,
}

impl Writeback {
    /// For `file` (a second handle of the file being written).
    pub fn new(file: File) -> Self {
        Self {
            file,
            started_at: 0,
            running: None,
            failed: None,
        }
    }

    /// Waits for the running sync, if any. Its error must not be lost: a
    /// failed fsync may leave pages marked clean that never reached disk,
    /// so once one failed, this fails every time.
    pub fn wait(&mut self) -> io::Result<()> {
        if let Some(kind) = self.failed {
            return Err(io::Error::new(
                kind,
                "an earlier fdatasync of this file failed",
            ));
        }
        let result = match self.running.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the fsync thread panicked"))),
            None => Ok(()),
        };
        if let Err(e) = &result {
            self.failed = Some(e.kind());
        }
        result
    }

    /// Makes the whole file durable: waits for the running sync, then
    /// fsyncs (data and metadata) through the same file.
    pub fn sync_all(mut self) -> io::Result<()> {
        self.wait()?;
        self.file.sync_all()
    }

    /// Starts a sync of what the file holds at `len`, once the last one is
    /// done and [`EARLY_SYNC_EVERY`] more bytes came.
    pub fn maybe_start(&mut self, len: u64) -> io::Result<()> {
        if len < self.started_at + EARLY_SYNC_EVERY
            || self.running.as_ref().is_some_and(|h| !h.is_finished())
        {
            return Ok(());
        }
        self.wait()?;
        let file = self.file.try_clone()?;
        self.running = Some(
            std::thread::Builder::new()
                .name("cairn-writeback".into())
                .spawn(move || file.sync_data())?,
        );
        self.started_at = len;
        Ok(())
    }
}

/// A writeback given up (the file failed, or is removed) still waits for
/// its running sync: no sync thread outlives the file's writer.
impl Drop for Writeback {
    fn drop(&mut self) {
        if let Some(h) = self.running.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed sync fails every later wait, and no new sync starts.
    #[test]
    fn a_failed_sync_stays_failed() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("f")).unwrap();
        let mut w = Writeback::new(file);
        w.maybe_start(EARLY_SYNC_EVERY - 1).unwrap();
        assert!(w.running.is_none(), "not before EARLY_SYNC_EVERY bytes");
        w.maybe_start(EARLY_SYNC_EVERY).unwrap();
        assert!(w.running.is_some());
        w.wait().unwrap();
        w.running = Some(std::thread::spawn(|| Err(io::Error::other("EIO"))));
        assert!(w.wait().is_err());
        assert!(w.wait().is_err(), "the failure is sticky");
        assert!(w.maybe_start(3 * EARLY_SYNC_EVERY).is_err());
        assert!(w.running.is_none());
    }

    /// Dropped mid-sync, a writeback waits for that sync to end.
    #[test]
    fn a_dropped_writeback_waits_for_its_sync() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writeback::new(File::create(dir.path().join("f")).unwrap());
        let ended = Arc::new(AtomicBool::new(false));
        let flag = ended.clone();
        w.running = Some(std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            flag.store(true, Ordering::SeqCst);
            Ok(())
        }));
        drop(w);
        assert!(ended.load(Ordering::SeqCst));
    }
}
