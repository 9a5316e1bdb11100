//! Large `entries` records, kept as plain files beside sled.
//!
//! sled keeps every value written or read in a run in memory (its cache
//! does not give back large values), so a first snapshot of a 10 GB data
//! path held all its packs' records, about 120 MiB. A record longer than
//! [`INLINE_MAX`] is therefore written to `INDEX/entries/NNNNNNNN` (the
//! pack number in hex) and sled holds only its length and blake3 hash
//! (`entry_files` tree, [`record::encode_entry_file`]); a read checks both,
//! so a torn or garbled file is reported as damage, never trusted.
//!
//! Order of writes: the file and its directory are fsynced before its sled
//! record is written (sled may make a record durable before any flush), so
//! a durable record always names a durable file. A removed pack's file is
//! deleted only after the flush that made the removal durable (the removals
//! a flush covers are taken before it starts); a crash in between leaves an
//! orphan file, which nothing names and the next clear sweeps. Pack numbers
//! are never reused ([`Index`](crate::Index) keeps the next one in `meta`),
//! so a file is only ever written for a number no record names yet.

use std::fs;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use cairn_format::ChunkId;

use crate::record::EntryFile;

/// `entries` records up to this length stay in sled (the metadata packs
/// of a snapshot, small data packs); longer ones become files.
pub const INLINE_MAX: usize = 64 << 10;

/// Why an entry file could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// Missing, or its length or hash differs from the record.
    Damaged,
    /// The file system failed.
    Io(PathBuf, io::Error),
}

/// The directory of entry files.
pub struct EntryFiles {
    dir: PathBuf,
    /// Pack numbers whose files go once the next flush is durable.
    doomed: Mutex<Vec<u32>>,
}

impl EntryFiles {
    /// Opens (creating) the directory `dir`.
    pub fn open(dir: PathBuf) -> io::Result<Self> {
        fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            doomed: Mutex::new(Vec::new()),
        })
    }

    /// The file of pack number `no`.
    pub fn path_of(&self, no: u32) -> PathBuf {
        self.dir.join(format!("{no:08x}"))
    }

    /// Writes and fsyncs the record of pack number `no` (and the
    /// directory); returns what sled keeps of it.
    pub fn write(&self, no: u32, bytes: &[u8]) -> Result<EntryFile, (PathBuf, io::Error)> {
        let path = self.path_of(no);
        let write = || -> io::Result<()> {
            let mut f = fs::File::create(&path)?;
            f.write_all(bytes)?;
            f.sync_data()
        };
        write().map_err(|e| (path.clone(), e))?;
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| (self.dir.clone(), e))?;
        Ok(EntryFile {
            len: bytes.len() as u64,
            hash: ChunkId::of(bytes).0,
        })
    }

    /// Reads the record of pack number `no`, checked against `rec`.
    pub fn read(&self, no: u32, rec: &EntryFile) -> Result<Vec<u8>, ReadError> {
        let path = self.path_of(no);
        let read = || -> io::Result<Option<Vec<u8>>> {
            let mut f = fs::File::open(&path)?;
            // The length first, so a garbled file is never read whole.
            if f.metadata()?.len() != rec.len {
                return Ok(None);
            }
            let mut bytes = Vec::with_capacity(rec.len as usize);
            f.read_to_end(&mut bytes)?;
            Ok(Some(bytes))
        };
        let bytes = match read() {
            Ok(Some(b)) => b,
            Ok(None) => return Err(ReadError::Damaged),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ReadError::Damaged),
            Err(e) => return Err(ReadError::Io(path, e)),
        };
        if bytes.len() as u64 != rec.len || ChunkId::of(&bytes).0 != rec.hash {
            return Err(ReadError::Damaged);
        }
        Ok(bytes)
    }

    /// Marks the file of `no` for deletion after the next flush.
    pub fn doom(&self, no: u32) {
        self.doomed.lock().expect("doomed lock").push(no);
    }

    /// Before sled flushes: the removals that flush will make durable.
    pub fn take_doomed(&self) -> Vec<u32> {
        std::mem::take(&mut *self.doomed.lock().expect("doomed lock"))
    }

    /// The flush failed: `doomed` waits for the next one.
    pub fn doom_again(&self, doomed: Vec<u32>) {
        self.doomed.lock().expect("doomed lock").extend(doomed);
    }

    /// After sled flushed: deletes the files of `doomed` (best effort: one
    /// left behind is an orphan nothing names).
    pub fn remove(&self, doomed: Vec<u32>) {
        for no in doomed {
            let _ = fs::remove_file(self.path_of(no));
        }
    }

    /// Deletes every file (the index has been cleared durably).
    pub fn clear(&self) -> Result<(), (PathBuf, io::Error)> {
        self.doomed.lock().expect("doomed lock").clear();
        let entries = fs::read_dir(&self.dir).map_err(|e| (self.dir.clone(), e))?;
        for entry in entries {
            let path = entry.map_err(|e| (self.dir.clone(), e))?.path();
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err((path, e)),
            }
        }
        Ok(())
    }
}
