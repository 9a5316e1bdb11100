//! The walk: lists the source tree beside the parent snapshot's tree and
//! decides, per file, whether its content can be taken from the parent
//! (size, mtime, ctime and inode unchanged) or must be read.

use std::collections::HashMap;
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use cairn_format::{ChunkId, EntryKind, EntryMeta, FileContent, TreeEntry};

use crate::error::{IoContext, Result};
use crate::reader::{ChunkReader, FrameCache};
use crate::tree::load_tree;

/// A directory to be written as a tree node.
pub(crate) struct DirPlan {
    /// Entries sorted by name.
    pub entries: Vec<EntryPlan>,
}

/// One entry of a directory.
pub(crate) struct EntryPlan {
    pub name: Vec<u8>,
    pub meta: EntryMeta,
    pub item: ItemPlan,
    /// Size at walk time (files).
    pub size: u64,
}

/// What to do with an entry.
pub(crate) enum ItemPlan {
    /// Unchanged since the parent: take its content.
    Reuse(FileContent),
    /// Read the file; its result goes to `files[slot]`.
    Read { slot: usize },
    /// A subdirectory.
    Dir(DirPlan),
    /// A symlink.
    Symlink(Vec<u8>),
}

/// A file the walk found must be read.
pub(crate) struct FileJob {
    pub path: PathBuf,
    pub size: u64,
    /// The parent snapshot's content of a DuckDB file (listed): its
    /// unchanged blocks need not be read.
    pub parent: Option<FileContent>,
}

/// The walk's result for one source root.
pub(crate) struct Walker<'r, 's> {
    pub reader: &'r ChunkReader<'s>,
    pub cache: FrameCache,
    pub full_read: bool,
    /// Paths never to descend into (the store itself).
    pub exclude: Vec<PathBuf>,
    /// When not empty, only these paths (absolute, canonical), what lies
    /// under them and the directories leading to them are walked.
    pub only: Vec<PathBuf>,
    pub files: Vec<FileJob>,
    pub warnings: Vec<String>,
    /// Transient HitKeep files left out (absolute paths).
    pub excluded: Vec<PathBuf>,
    pub reused: u64,
    pub reused_bytes: u64,
}

/// Metadata as cairn records it.
pub(crate) fn entry_meta(m: &Metadata) -> EntryMeta {
    EntryMeta {
        mode: m.mode(),
        mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
        ino: m.ino(),
        dev: m.dev(),
    }
}

/// Whether the parent's entry can stand for the file as it is now.
pub(crate) fn unchanged(parent: &TreeEntry, meta: &EntryMeta, size: u64) -> Option<FileContent> {
    match &parent.kind {
        EntryKind::File(c)
            if c.size == size
                && parent.meta.mtime_ns == meta.mtime_ns
                && parent.meta.ctime_ns == meta.ctime_ns
                && parent.meta.ino == meta.ino =>
        {
            Some(c.clone())
        }
        _ => None,
    }
}

impl<'r, 's> Walker<'r, 's> {
    /// Plans the file at `path` against its entry in the parent snapshot:
    /// reused when unchanged, else queued to be read (a DuckDB file with
    /// the parent's content, so only its changed blocks are read).
    pub fn file(
        &mut self,
        path: &Path,
        meta: &EntryMeta,
        size: u64,
        prev: Option<&TreeEntry>,
    ) -> ItemPlan {
        let prev = prev.filter(|_| !self.full_read);
        if let Some(c) = prev.and_then(|p| unchanged(p, meta, size)) {
            self.reused += 1;
            self.reused_bytes += c.size;
            return ItemPlan::Reuse(c);
        }
        let parent = prev.and_then(|p| match &p.kind {
            EntryKind::File(c) if c.layout.hash_is_of_list() => Some(c.clone()),
            _ => None,
        });
        self.files.push(FileJob {
            path: path.to_path_buf(),
            size,
            parent,
        });
        ItemPlan::Read {
            slot: self.files.len() - 1,
        }
    }

    /// Plans the directory at `path`; `parent` is its tree in the parent snapshot.
    pub fn dir(&mut self, path: &Path, parent: Option<ChunkId>) -> Result<DirPlan> {
        let parent_entries: HashMap<Vec<u8>, TreeEntry> = match parent {
            Some(id) => {
                let ctx = || format!("parent tree of {}", path.display());
                load_tree(self.reader, &id, &mut self.cache, &ctx)?
                    .entries
                    .into_iter()
                    .map(|e| (e.name.clone(), e))
                    .collect()
            }
            None => HashMap::new(),
        };
        let mut names: Vec<(Vec<u8>, PathBuf)> = Vec::new();
        for e in fs::read_dir(path).at(path)? {
            let e = e.at(path)?;
            names.push((e.file_name().as_bytes().to_vec(), e.path()));
        }
        names.sort();
        let mut entries = Vec::with_capacity(names.len());
        for (name, child) in names {
            if self.exclude.iter().any(|x| x == &child) {
                continue;
            }
            if !self.only.is_empty()
                && !self
                    .only
                    .iter()
                    .any(|o| o.starts_with(&child) || child.starts_with(o))
            {
                continue;
            }
            if crate::hitkeep::is_transient(&name) {
                self.excluded.push(child);
                continue;
            }
            let m = match fs::symlink_metadata(&child) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.warnings
                        .push(format!("{}: vanished during the snapshot", child.display()));
                    continue;
                }
                Err(e) => return Err(e).at(&child),
            };
            let meta = entry_meta(&m);
            let prev = parent_entries.get(&name);
            let ft = m.file_type();
            let item = if ft.is_dir() {
                let sub = prev.and_then(|p| match p.kind {
                    EntryKind::Dir(id) => Some(id),
                    _ => None,
                });
                ItemPlan::Dir(self.dir(&child, sub)?)
            } else if ft.is_file() {
                self.file(&child, &meta, m.len(), prev)
            } else if ft.is_symlink() {
                let target = fs::read_link(&child).at(&child)?;
                ItemPlan::Symlink(target.as_os_str().as_bytes().to_vec())
            } else {
                self.warnings.push(format!(
                    "{}: not a regular file, directory or symlink; skipped",
                    child.display()
                ));
                continue;
            };
            entries.push(EntryPlan {
                name,
                meta,
                item,
                size: if ft.is_file() { m.len() } else { 0 },
            });
        }
        Ok(DirPlan { entries })
    }
}
