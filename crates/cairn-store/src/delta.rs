//! Files stored as a patch against a base ([`ContentLayout::Delta`]):
//! rebuilding one from the store, and the base a new one is made against.
//!
//! A delta's layout names a metadata chunk holding its base's
//! [`FileContent`] record; the base may itself be a delta, down a chain of
//! at most [`MAX_DELTA_DEPTH`] that ends in a file stored as its bytes.
//! Rebuilding walks the chain down to that file, then applies each patch
//! back up, checking every rebuilt file against its record's size and hash.
//! A chain is whole in the store as long as anything references its top:
//! marking (`mark.rs`) follows every base.
//!
//! [`ContentLayout::Delta`]: cairn_format::ContentLayout::Delta

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use cairn_format::delta::{apply_patch, MAX_DELTA_FILE};
use cairn_format::{FileContent, FormatError, MAX_DELTA_DEPTH};

use crate::error::{FormatContext, Result, StoreError};
use crate::reader::{ChunkReader, FrameCache};
use crate::tree::{for_each_chunk, load_file_record};

/// Leave to hold a delta's base in memory: a file's base, its patch and
/// the file itself, each up to 64 MiB. Restores rebuild at most
/// [`MemoryPermit::rebuild`]'s count of files at once, imports hold at most
/// [`MemoryPermit::base`]'s count of bases. Given back on drop. The
/// holder must not wait on rayon work while it holds one (a rayon thread
/// waiting for a join can steal a task that waits for a permit).
pub(crate) struct MemoryPermit(&'static (Mutex<usize>, Condvar));

/// Restores rebuilding a delta file at once.
static REBUILDS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());
/// Imports holding a delta's base at once.
static BASES: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());
/// How many of each.
const AT_ONCE: usize = 2;

impl MemoryPermit {
    /// Leave to rebuild a delta file for a restore.
    pub(crate) fn rebuild() -> Self {
        Self::wait(&REBUILDS)
    }

    /// Leave to hold a base while a patch is made.
    pub(crate) fn base() -> Self {
        Self::wait(&BASES)
    }

    fn wait(slot: &'static (Mutex<usize>, Condvar)) -> Self {
        let (count, freed) = slot;
        let mut n = count.lock().unwrap_or_else(|e| e.into_inner());
        while *n >= AT_ONCE {
            n = freed.wait(n).unwrap_or_else(|e| e.into_inner());
        }
        *n += 1;
        Self(slot)
    }
}

impl Drop for MemoryPermit {
    fn drop(&mut self) {
        let (count, freed) = self.0;
        *count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        freed.notify_one();
    }
}

/// What a new file may be stored as a patch against: the same file of an
/// earlier snapshot.
#[derive(Clone, Debug)]
pub struct DeltaBase {
    /// The base's content record, as that snapshot holds it.
    pub content: FileContent,
    /// Where the base may still be on disk: read from there (when its
    /// hash matches `content`) instead of being rebuilt from the store.
    pub local: Option<PathBuf>,
}

/// The depth a delta against `base` would have.
pub(crate) fn depth_over(base: &FileContent) -> u32 {
    base.delta_base().map_or(0, |(_, d)| d) + 1
}

/// Whether a file of `size` bytes may be stored against `base`.
pub(crate) fn may_patch(base: &FileContent, size: u64) -> bool {
    size <= MAX_DELTA_FILE
        && base.size <= MAX_DELTA_FILE
        && depth_over(base) <= MAX_DELTA_DEPTH
        // A rebuilt base is checked against a hash of its bytes.
        && !base.layout.hash_is_of_list()
}

/// Whether everything `c` needs is in the store: its chunks and, down its
/// chain, every base record and every base's chunks (looked up in the
/// index, patches and records also read and verified; anything missing or
/// unreadable is a no).
pub(crate) fn whole_in_store(
    reader: &ChunkReader<'_>,
    cache: &mut FrameCache,
    c: &FileContent,
    context: &dyn Fn() -> String,
) -> bool {
    let mut rec = c.clone();
    let mut data = FrameCache::default();
    for _ in 0..=MAX_DELTA_DEPTH {
        // A patch's chunks are read and verified (they are small, and a
        // damaged one would break every run built on it); a stored file's
        // are only looked up, as whole-file dedup does.
        let patch = rec.is_delta();
        let listed = for_each_chunk(reader, &rec.chunks, cache, context, &mut |child| {
            if patch {
                reader.with_chunk(&child.id, &mut data, context, |_| ())
            } else {
                reader.locate(&child.id, context).map(drop)
            }
        });
        if listed.is_err() {
            return false;
        }
        match rec.delta_base() {
            None => return true,
            Some((base, _)) => match load_file_record(reader, &base, cache, context) {
                Ok(r) => rec = r,
                Err(_) => return false,
            },
        }
    }
    false
}

/// The bytes of `base`: from its local copy when that still matches,
/// else rebuilt from the store.
pub(crate) fn base_bytes(
    reader: &ChunkReader<'_>,
    cache: &mut FrameCache,
    base: &DeltaBase,
    context: &dyn Fn() -> String,
) -> Result<Vec<u8>> {
    if let Some(path) = &base.local {
        if let Some(bytes) = read_if_same(path, &base.content) {
            return Ok(bytes);
        }
    }
    rebuild(reader, cache, &base.content, context)
}

/// The file at `path` if it has `content`'s size and hash (any error
/// reading it means "no").
fn read_if_same(path: &Path, content: &FileContent) -> Option<Vec<u8>> {
    // A regular file only: no symlink followed, no FIFO waited on.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let m = f.metadata().ok()?;
    if !m.is_file() || m.len() != content.size {
        return None;
    }
    let mut bytes = Vec::with_capacity(content.size as usize);
    f.take(content.size + 1).read_to_end(&mut bytes).ok()?;
    check(content, &bytes, &String::new).ok().map(|()| bytes)
}

/// The whole content of `c` (a delta or a file of at most
/// [`MAX_DELTA_FILE`] bytes), every file of its chain checked against its
/// size and hash.
pub(crate) fn rebuild(
    reader: &ChunkReader<'_>,
    cache: &mut FrameCache,
    c: &FileContent,
    context: &dyn Fn() -> String,
) -> Result<Vec<u8>> {
    // The chain, newest first, down to a file stored as its bytes.
    let mut chain = vec![c.clone()];
    while let Some((base, depth)) = chain.last().and_then(FileContent::delta_base) {
        let rec = load_file_record(reader, &base, cache, context)?;
        let below = rec.delta_base().map_or(0, |(_, d)| d);
        if below + 1 != depth || chain.len() > MAX_DELTA_DEPTH as usize {
            return Err(FormatError::Invalid {
                what: "delta chain",
                detail: format!("a delta of depth {depth} on a base of depth {below}"),
            })
            .what(format!("base record {} of {}", base.short(), context()));
        }
        chain.push(rec);
    }
    let bottom = chain.pop().expect("the chain holds c");
    if bottom.size > MAX_DELTA_FILE {
        return Err(FormatError::Invalid {
            what: "delta chain",
            detail: format!("a base of {} bytes is past the delta limit", bottom.size),
        })
        .what(context());
    }
    let mut bytes = chunk_bytes(reader, cache, &bottom, context)?;
    check(&bottom, &bytes, context)?;
    for rec in chain.iter().rev() {
        let patch = chunk_bytes(reader, cache, rec, context)?;
        bytes = apply_patch(&bytes, &patch, rec.size).what(context())?;
        check(rec, &bytes, context)?;
    }
    Ok(bytes)
}

/// The concatenated chunks of `c` (its bytes, or its patch for a delta).
fn chunk_bytes(
    reader: &ChunkReader<'_>,
    cache: &mut FrameCache,
    c: &FileContent,
    context: &dyn Fn() -> String,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut data = FrameCache::default();
    for_each_chunk(reader, &c.chunks, cache, context, &mut |child| {
        if (out.len() as u64).saturating_add(child.len) > MAX_DELTA_FILE {
            return Err(FormatError::Invalid {
                what: "delta chain",
                detail: format!("chunks past the {MAX_DELTA_FILE}-byte delta limit"),
            })
            .what(context());
        }
        reader.with_chunk(&child.id, &mut data, context, |b| out.extend_from_slice(b))
    })?;
    Ok(out)
}

fn check(c: &FileContent, bytes: &[u8], context: &dyn Fn() -> String) -> Result<()> {
    // A listed DuckDB file's hash is not of its bytes; no delta is made on
    // one (`may_patch`), so such a base is refused, never taken unchecked.
    if c.layout.hash_is_of_list()
        || bytes.len() as u64 != c.size
        || *blake3::hash(bytes).as_bytes() != c.hash
    {
        return Err(StoreError::FileHashMismatch {
            path: PathBuf::from(context()),
        });
    }
    Ok(())
}
