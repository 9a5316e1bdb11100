//! Integrity check of a store (`cairn check`).
//!
//! By default the check is structural and fast: every manifest decodes;
//! every tree node, chunk-list node and delta base record reachable from
//! a snapshot is read
//! (its frame decompressed, its bytes verified against its id) and
//! decodes; every data chunk those nodes name is in the index, with the
//! length the list records; every indexed pack is on disk with its
//! recorded size, and a pack on disk outside the index has a readable
//! trailer. Each tree and list node is checked once, however many
//! snapshots share it, so the cost follows the store's unique metadata.
//!
//! With [`DataSelection::All`] (or a subset) every selected pack is also
//! read front to back in large reads, its blake3 compared with its name,
//! every frame decompressed once and every chunk in it verified against
//! its id, packs in parallel.
//!
//! Damage is then mapped back to what it costs: each damaged snapshot with
//! the files (or directories, when a directory or list node is damaged)
//! that cannot be restored from it. The report is typed; the CLI prints it.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use cairn_format::delta::MAX_DELTA_FILE;
use cairn_format::pack::{self, PackEntry};
use cairn_format::{
    ChunkId, ChunkList, EntryKind, FileContent, FormatError, ListNode, PackId, SnapshotId,
    TreeEntry, TreeNode,
};

use crate::error::{Result, StoreError};
use crate::reader::{ChunkReader, FrameCache};
use crate::snapshot::Progress;
use crate::store::Store;

/// Which packs `check` reads in full.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DataSelection {
    /// None: structure only.
    None,
    /// Every pack.
    All,
    /// Packs whose position in pack-id order, modulo `m`, is `n - 1`
    /// (`n` in `1..=m`): running `1/m` to `m/m` covers every pack.
    Slice {
        /// Which slice, from 1.
        n: u32,
        /// How many slices.
        m: u32,
    },
    /// A fixed pseudo-random share of the packs, in percent, chosen by a
    /// hash of each pack's id (the same packs on every run).
    Percent(f64),
}

impl DataSelection {
    /// Parses `N/M` or `P%`.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("{s:?}: expected a percentage such as 10%"))?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(format!(
                    "{s:?}: the percentage must be above 0 and at most 100"
                ));
            }
            return Ok(Self::Percent(p));
        }
        let bad = || format!("{s:?}: expected N/M (1 <= N <= M) or P%");
        let (n, m) = s.split_once('/').ok_or_else(bad)?;
        let n: u32 = n.trim().parse().map_err(|_| bad())?;
        let m: u32 = m.trim().parse().map_err(|_| bad())?;
        if m == 0 || n == 0 || n > m {
            return Err(bad());
        }
        Ok(Self::Slice { n, m })
    }

    /// Whether the pack at `position` (in pack-id order) is selected.
    pub fn selects(&self, position: usize, id: &PackId) -> bool {
        match *self {
            Self::None => false,
            Self::All => true,
            Self::Slice { n, m } => position as u64 % u64::from(m) == u64::from(n - 1),
            Self::Percent(p) => {
                let mut h = blake3::Hasher::new();
                h.update(&id.0);
                h.update(b"subset");
                let x = u32::from_le_bytes(h.finalize().as_bytes()[..4].try_into().expect("4"));
                (f64::from(x) + 0.5) / 4_294_967_296.0 * 100.0 < p
            }
        }
    }

    /// Whether any data is read.
    pub fn reads_data(&self) -> bool {
        !matches!(self, Self::None)
    }
}

/// What to check.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Which packs to read in full.
    pub read_data: DataSelection,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            read_data: DataSelection::None,
        }
    }
}

/// A damaged pack.
#[derive(Debug)]
pub struct DamagedPack {
    /// The pack.
    pub pack: PackId,
    /// What is wrong with it (the first problem found).
    pub error: StoreError,
    /// Whether the whole pack is unusable (missing, trailer unreadable):
    /// every chunk in it counts as damaged.
    pub unreadable: bool,
    /// Chunks in it found damaged (when read).
    pub damaged_chunks: u64,
}

/// A file or directory of a snapshot that cannot be restored.
#[derive(Debug)]
pub struct DamagedFile {
    /// Path as restore writes it (relative to the target; `.` for the
    /// root directory).
    pub path: PathBuf,
    /// A directory whose tree node is damaged: nothing under it can be listed.
    pub is_dir: bool,
    /// Why.
    pub error: StoreError,
}

impl DamagedFile {
    /// The path for display: directories end in `/`.
    pub fn display_path(&self) -> String {
        let p = if self.path.as_os_str().is_empty() {
            ".".to_string()
        } else {
            self.path.display().to_string()
        };
        if self.is_dir && !p.ends_with('/') {
            format!("{p}/")
        } else {
            p
        }
    }
}

/// A snapshot that cannot be restored in full.
#[derive(Debug)]
pub struct DamagedSnapshot {
    /// Its id (as named on disk).
    pub id: String,
    /// The snapshot itself is unusable (its manifest does not load).
    pub error: Option<StoreError>,
    /// Damaged files and directories, sorted by path.
    pub files: Vec<DamagedFile>,
}

/// What a check found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Snapshots (manifest files) checked.
    pub snapshots_checked: u64,
    /// Packs on disk.
    pub packs: u64,
    /// Packs read in full.
    pub packs_checked: u64,
    /// Bytes of packs read in full.
    pub bytes_checked: u64,
    /// Chunks whose bytes were verified against their id: every chunk of
    /// the packs read in full, plus the tree and list nodes read.
    pub chunks_checked: u64,
    /// Distinct tree (directory) nodes checked.
    pub tree_nodes: u64,
    /// Distinct chunk-list nodes checked.
    pub list_nodes: u64,
    /// Data chunk references looked up in the index.
    pub data_refs: u64,
    /// Damaged packs, by id.
    pub damaged_packs: Vec<DamagedPack>,
    /// Damaged snapshots, oldest first.
    pub damaged_snapshots: Vec<DamagedSnapshot>,
}

impl CheckReport {
    /// No damage found.
    pub fn is_clean(&self) -> bool {
        self.damaged_packs.is_empty() && self.damaged_snapshots.is_empty()
    }
}

/// Checks `store`. `Err` means the check could not run (the store's
/// directories or its index failed); damage is in the report.
pub fn check(store: &Store, opts: &CheckOptions, progress: &dyn Progress) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    let on_disk = store.pack_files()?;
    let manifests = store.manifest_ids()?;
    let indexed: BTreeMap<PackId, u64> = store.index().packs()?.into_iter().collect();
    report.packs = on_disk.len() as u64;

    // Packs: the index against the directory, and trailers of the rest.
    let mut packs: BTreeMap<PackId, DamagedPack> = BTreeMap::new();
    for (id, len) in &indexed {
        let problem = match on_disk.get(id) {
            None => Some(format!("missing (the index records {len} bytes)")),
            Some(l) if l != len => Some(format!("{l} bytes on disk, the index records {len}")),
            Some(_) => None,
        };
        if let Some(detail) = problem {
            packs.insert(*id, whole_pack(*id, pack_invalid(id, detail)));
        }
    }
    for id in on_disk.keys() {
        if !indexed.contains_key(id) {
            if let Err(e) = store.read_trailer(id) {
                packs.insert(*id, whole_pack(*id, e));
            }
        }
    }

    // Data: selected packs front to back.
    let mut bad_chunks: HashMap<ChunkId, (PackId, String)> = HashMap::new();
    if opts.read_data.reads_data() {
        let selected: Vec<(PackId, u64)> = on_disk
            .iter()
            .enumerate()
            .filter(|(i, (id, _))| opts.read_data.selects(*i, id) && !packs.contains_key(*id))
            .map(|(_, (id, len))| (*id, *len))
            .collect();
        progress.start(
            selected.len() as u64,
            selected.iter().map(|(_, l)| *l).sum(),
        );
        let outcomes: Vec<(PackId, PackOutcome)> = selected
            .par_iter()
            .map(|(id, len)| {
                let o = read_pack(store, id, *len, progress);
                progress.file_done();
                (*id, o)
            })
            .collect();
        for (id, o) in outcomes {
            report.packs_checked += 1;
            report.bytes_checked += o.bytes;
            report.chunks_checked += o.chunks;
            if let Some(e) = o.unreadable {
                packs.insert(id, whole_pack(id, e));
                continue;
            }
            let first = o.bad.first().map(|(c, d)| StoreError::ChunkDamaged {
                id: c.to_hex(),
                pack: id.to_hex(),
                detail: d.clone(),
            });
            let error = first.or_else(|| {
                (!o.hash_ok)
                    .then(|| pack_invalid(&id, "its content does not hash to its name".to_string()))
            });
            if let Some(error) = error {
                packs.insert(
                    id,
                    DamagedPack {
                        pack: id,
                        error,
                        unreadable: false,
                        damaged_chunks: o.bad.len() as u64,
                    },
                );
            }
            for (c, d) in o.bad {
                bad_chunks.insert(c, (id, d));
            }
        }
    }

    // Snapshots: walk every tree once, map damage to paths.
    let unreadable: HashMap<PackId, String> = packs
        .values()
        .filter(|p| p.unreadable)
        .map(|p| (p.pack, p.error.to_string()))
        .collect();
    let unindexed_bad: Vec<String> = packs
        .keys()
        .filter(|id| !indexed.contains_key(*id))
        .map(|id| id.short())
        .collect();
    let mut walker = Walker {
        store,
        reader: ChunkReader::new(store),
        cache: FrameCache::default(),
        unreadable: &unreadable,
        bad_chunks: &bad_chunks,
        trees: HashMap::new(),
        lists: HashMap::new(),
        bases: HashMap::new(),
        meta_read: 0,
        data_refs: 0,
    };
    for id in manifests {
        report.snapshots_checked += 1;
        let m = match store.load_manifest(id) {
            Ok(m) => m,
            Err(StoreError::Index(e)) => return Err(StoreError::Index(e)),
            Err(e) => {
                report.damaged_snapshots.push(DamagedSnapshot {
                    id: id.to_string(),
                    error: Some(e),
                    files: Vec::new(),
                });
                continue;
            }
        };
        let mut found: Vec<(PathBuf, Fault)> = Vec::new();
        let several = m.roots.len() > 1;
        for root in &m.roots {
            let base = if several {
                let label = root.label.as_bytes();
                if label.is_empty() || label.contains(&b'/') || label == b".." || label == b"." {
                    found.push((
                        PathBuf::new(),
                        Fault::Invalid {
                            what: format!("snapshot {id}"),
                            cause: FormatError::Invalid {
                                what: "source root",
                                detail: format!("unsafe root label {:?}", root.label),
                            },
                        },
                    ));
                    continue;
                }
                PathBuf::from(&root.label)
            } else {
                PathBuf::new()
            };
            if let Some(tree) = &root.tree {
                for (p, f) in walker.tree(tree)?.iter() {
                    found.push((join(&base, p), f.clone()));
                }
            }
            if let Some(entry) = &root.file {
                for (p, f) in walker.entry(entry)? {
                    found.push((join(&base, &p), f));
                }
            }
        }
        if !found.is_empty() {
            found.sort_by(|a, b| a.0.cmp(&b.0));
            let files = found
                .into_iter()
                .map(|(path, f)| DamagedFile {
                    is_dir: f.is_dir(),
                    error: f.into_error(&path, id, &unindexed_bad),
                    path,
                })
                .collect();
            report.damaged_snapshots.push(DamagedSnapshot {
                id: id.to_string(),
                error: None,
                files,
            });
        }
    }
    report.tree_nodes = walker.trees.len() as u64;
    report.list_nodes = walker.lists.len() as u64;
    report.chunks_checked += walker.meta_read;
    report.data_refs = walker.data_refs;
    report.damaged_packs = packs.into_values().collect();
    Ok(report)
}

fn join(base: &Path, rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() {
        base.to_owned()
    } else if base.as_os_str().is_empty() {
        rel.to_owned()
    } else {
        base.join(rel)
    }
}

fn whole_pack(pack: PackId, error: StoreError) -> DamagedPack {
    DamagedPack {
        pack,
        error,
        unreadable: true,
        damaged_chunks: 0,
    }
}

fn pack_invalid(id: &PackId, detail: String) -> StoreError {
    StoreError::Format {
        what: format!("pack {id}"),
        cause: FormatError::Invalid {
            what: "pack file",
            detail,
        },
    }
}

/// What is wrong with one file or directory (cached per node, so it is
/// cheap to clone and holds no path).
#[derive(Debug)]
enum Fault {
    /// A chunk is in no pack.
    Missing { chunk: ChunkId, what: &'static str },
    /// A chunk is in a pack but its bytes are bad or its pack unreadable.
    Damaged {
        chunk: ChunkId,
        pack: PackId,
        detail: String,
    },
    /// A node or list does not decode or does not add up.
    Invalid { what: String, cause: FormatError },
    /// The directory node of this path is damaged.
    Dir(Box<Fault>),
}

impl Clone for Fault {
    fn clone(&self) -> Self {
        match self {
            Self::Missing { chunk, what } => Self::Missing {
                chunk: *chunk,
                what,
            },
            Self::Damaged {
                chunk,
                pack,
                detail,
            } => Self::Damaged {
                chunk: *chunk,
                pack: *pack,
                detail: detail.clone(),
            },
            Self::Invalid { what, cause } => Self::Invalid {
                what: what.clone(),
                cause: dup(cause),
            },
            Self::Dir(f) => Self::Dir(f.clone()),
        }
    }
}

fn dup(e: &FormatError) -> FormatError {
    match e {
        FormatError::BadMagic { expected } => FormatError::BadMagic { expected },
        FormatError::NewerVersion {
            what,
            found,
            supported,
        } => FormatError::NewerVersion {
            what,
            found: *found,
            supported: *supported,
        },
        FormatError::Truncated { what } => FormatError::Truncated { what },
        FormatError::Checksum { what } => FormatError::Checksum { what },
        FormatError::Decode { what, detail } => FormatError::Decode {
            what,
            detail: detail.clone(),
        },
        FormatError::Invalid { what, detail } => FormatError::Invalid {
            what,
            detail: detail.clone(),
        },
        FormatError::Compression { what, detail } => FormatError::Compression {
            what,
            detail: detail.clone(),
        },
    }
}

impl Fault {
    fn is_dir(&self) -> bool {
        matches!(self, Self::Dir(_))
    }

    fn into_error(self, path: &Path, snapshot: SnapshotId, unindexed_bad: &[String]) -> StoreError {
        let shown = if path.as_os_str().is_empty() {
            ".".to_string()
        } else {
            path.display().to_string()
        };
        match self {
            Self::Dir(f) => f.into_error(path, snapshot, unindexed_bad),
            Self::Missing { chunk, what } => {
                let mut context = format!("{what} of {shown} in snapshot {snapshot}");
                if !unindexed_bad.is_empty() {
                    context.push_str(&format!(
                        "; it may be in unreadable pack {}",
                        unindexed_bad.join(", ")
                    ));
                }
                StoreError::ChunkMissing {
                    id: chunk.to_hex(),
                    context,
                }
            }
            Self::Damaged {
                chunk,
                pack,
                detail,
            } => StoreError::ChunkDamaged {
                id: chunk.to_hex(),
                pack: pack.to_hex(),
                detail,
            },
            Self::Invalid { what, cause } => StoreError::Format { what, cause },
        }
    }
}

/// Damage below a tree node, by path relative to it (empty: the node itself).
type TreeFaults = Arc<Vec<(PathBuf, Fault)>>;

/// What a chunk-list node covers and whether it is sound.
#[derive(Clone)]
struct ListResult {
    level: u8,
    len: u64,
    fault: Option<Fault>,
}

struct Walker<'a, 's> {
    store: &'s Store,
    reader: ChunkReader<'s>,
    cache: FrameCache,
    unreadable: &'a HashMap<PackId, String>,
    bad_chunks: &'a HashMap<ChunkId, (PackId, String)>,
    trees: HashMap<ChunkId, TreeFaults>,
    lists: HashMap<ChunkId, ListResult>,
    /// Delta base records checked: the base's depth and its damage.
    bases: HashMap<ChunkId, (u32, Option<Fault>)>,
    meta_read: u64,
    data_refs: u64,
}

impl Walker<'_, '_> {
    /// Reads a metadata node's verified bytes; `Ok(Err)` is damage,
    /// `Err` an index failure (the check cannot go on).
    fn read_meta(
        &mut self,
        id: &ChunkId,
        what: &'static str,
    ) -> Result<std::result::Result<Vec<u8>, Fault>> {
        let Some(loc) = self.store.index().lookup(id)? else {
            return Ok(Err(Fault::Missing { chunk: *id, what }));
        };
        if let Some(why) = self.unreadable.get(&loc.pack) {
            return Ok(Err(Fault::Damaged {
                chunk: *id,
                pack: loc.pack,
                detail: format!("{what} in an unreadable pack: {why}"),
            }));
        }
        if let Some((pack, why)) = self.bad_chunks.get(id) {
            return Ok(Err(Fault::Damaged {
                chunk: *id,
                pack: *pack,
                detail: format!("{what}: {why}"),
            }));
        }
        self.meta_read += 1;
        let ctx = || what.to_string();
        match self.reader.read(id, &mut self.cache, &ctx) {
            Ok(b) => Ok(Ok(b)),
            Err(StoreError::Index(e)) => Err(StoreError::Index(e)),
            Err(StoreError::ChunkMissing { .. }) => Ok(Err(Fault::Missing { chunk: *id, what })),
            Err(StoreError::ChunkDamaged { detail, .. }) => Ok(Err(Fault::Damaged {
                chunk: *id,
                pack: loc.pack,
                detail: format!("{what}: {detail}"),
            })),
            Err(e) => Ok(Err(Fault::Damaged {
                chunk: *id,
                pack: loc.pack,
                detail: format!("{what}: {e}"),
            })),
        }
    }

    /// Checks a directory node and everything below it, once.
    fn tree(&mut self, id: &ChunkId) -> Result<TreeFaults> {
        if let Some(r) = self.trees.get(id) {
            return Ok(r.clone());
        }
        let mut out = Vec::new();
        match self.read_meta(id, "directory node")? {
            Err(f) => out.push((PathBuf::new(), Fault::Dir(Box::new(f)))),
            Ok(bytes) => match TreeNode::decode(&bytes) {
                Err(cause) => out.push((
                    PathBuf::new(),
                    Fault::Dir(Box::new(Fault::Invalid {
                        what: format!("directory node {}", id.short()),
                        cause,
                    })),
                )),
                Ok(node) => {
                    for e in &node.entries {
                        out.extend(self.entry(e)?);
                    }
                }
            },
        }
        let r = Arc::new(out);
        self.trees.insert(*id, r.clone());
        Ok(r)
    }

    /// Checks one directory entry; returns its damage, by path relative
    /// to its directory.
    fn entry(&mut self, e: &TreeEntry) -> Result<Vec<(PathBuf, Fault)>> {
        let name = match e.safe_name() {
            Ok(n) => PathBuf::from(OsStr::from_bytes(n)),
            Err(cause) => {
                return Ok(vec![(
                    PathBuf::from(OsStr::from_bytes(&e.name)),
                    Fault::Invalid {
                        what: "directory entry".into(),
                        cause,
                    },
                )])
            }
        };
        Ok(match &e.kind {
            EntryKind::File(c) => self.file(c)?.map(|f| vec![(name, f)]).unwrap_or_default(),
            EntryKind::Dir(id) => self
                .tree(id)?
                .iter()
                .map(|(p, f)| (join(&name, p), f.clone()))
                .collect(),
            EntryKind::Symlink(_) => Vec::new(),
        })
    }

    /// Checks a file's chunk list.
    fn file(&mut self, c: &FileContent) -> Result<Option<Fault>> {
        let (len, fault) = match &c.chunks {
            ChunkList::Inline(children) => {
                let mut len = 0u64;
                for ch in children {
                    if let Some(f) = self.data(&ch.id, ch.len)? {
                        return Ok(Some(f));
                    }
                    len = len.saturating_add(ch.len);
                }
                (len, None)
            }
            ChunkList::Tree { root, level } => {
                let r = self.list(root, *level)?;
                (r.len, r.fault)
            }
        };
        if fault.is_some() {
            return Ok(fault);
        }
        if let Some((base, depth)) = c.delta_base() {
            // The chunks are a patch: its length says nothing of the
            // file's. The base must be sound, one level shallower.
            if c.size > MAX_DELTA_FILE {
                return Ok(Some(Fault::Invalid {
                    what: "file".into(),
                    cause: FormatError::Invalid {
                        what: "delta chain",
                        detail: format!("a delta of {} bytes is past the delta limit", c.size),
                    },
                }));
            }
            return self.base(&base, depth);
        }
        if len != c.size {
            return Ok(Some(Fault::Invalid {
                what: "file".into(),
                cause: FormatError::Invalid {
                    what: "chunk list",
                    detail: format!("its chunks add up to {len} bytes, the file has {}", c.size),
                },
            }));
        }
        Ok(None)
    }

    /// Checks the base record of a delta of `depth`: it decodes, is one
    /// level shallower (checked before going down, so this recurses at
    /// most `MAX_DELTA_DEPTH` deep whatever the store holds), and its own
    /// content is sound (once per record, however many deltas share it).
    fn base(&mut self, id: &ChunkId, depth: u32) -> Result<Option<Fault>> {
        let invalid = |cause| {
            Some(Fault::Invalid {
                what: format!("delta base record {}", id.short()),
                cause,
            })
        };
        let shallower = |below: u32| {
            (below + 1 != depth).then(|| {
                invalid(FormatError::Invalid {
                    what: "delta chain",
                    detail: format!("a delta of depth {depth} on a base of depth {below}"),
                })
            })
        };
        if let Some((below, fault)) = self.bases.get(id) {
            return Ok(shallower(*below).unwrap_or_else(|| fault.clone()));
        }
        let rec = match self.read_meta(id, "delta base record")? {
            Err(f) => return Ok(Some(f)),
            Ok(bytes) => match FileContent::decode(&bytes) {
                Err(cause) => return Ok(invalid(cause)),
                Ok(rec) => rec,
            },
        };
        let below = rec.delta_base().map_or(0, |(_, d)| d);
        if let Some(fault) = shallower(below) {
            return Ok(fault);
        }
        let fault = if rec.layout.hash_is_of_list() {
            invalid(FormatError::Invalid {
                what: "delta chain",
                detail: "a base whose hash is of its chunk list, not its bytes".into(),
            })
        } else if below == 0 && rec.size > MAX_DELTA_FILE {
            invalid(FormatError::Invalid {
                what: "delta chain",
                detail: format!("a base of {} bytes is past the delta limit", rec.size),
            })
        } else {
            self.file(&rec)?
        };
        self.bases.insert(*id, (below, fault.clone()));
        Ok(fault)
    }

    /// Checks that a data chunk is indexed (and, when its pack was read,
    /// sound) with the length its list records.
    fn data(&mut self, id: &ChunkId, len: u64) -> Result<Option<Fault>> {
        self.data_refs += 1;
        let Some(loc) = self.store.index().lookup(id)? else {
            return Ok(Some(Fault::Missing {
                chunk: *id,
                what: "data chunk",
            }));
        };
        if let Some(why) = self.unreadable.get(&loc.pack) {
            return Ok(Some(Fault::Damaged {
                chunk: *id,
                pack: loc.pack,
                detail: format!("in an unreadable pack: {why}"),
            }));
        }
        if let Some((pack, why)) = self.bad_chunks.get(id) {
            return Ok(Some(Fault::Damaged {
                chunk: *id,
                pack: *pack,
                detail: why.clone(),
            }));
        }
        if u64::from(loc.len) != len {
            return Ok(Some(Fault::Invalid {
                what: format!("data chunk {}", id.short()),
                cause: FormatError::Invalid {
                    what: "chunk list",
                    detail: format!("lists {len} bytes, the pack holds {}", loc.len),
                },
            }));
        }
        Ok(None)
    }

    /// Checks a chunk-list node of the expected level and everything
    /// below it, once.
    fn list(&mut self, id: &ChunkId, level: u8) -> Result<ListResult> {
        let r = match self.lists.get(id) {
            Some(r) => r.clone(),
            None => {
                let r = self.list_uncached(id)?;
                self.lists.insert(*id, r.clone());
                r
            }
        };
        if r.fault.is_none() && r.level != level {
            return Ok(ListResult {
                fault: Some(Fault::Invalid {
                    what: format!("chunk-list node {}", id.short()),
                    cause: FormatError::Invalid {
                        what: "chunk-list node",
                        detail: format!("level {} where {level} was expected", r.level),
                    },
                }),
                ..r
            });
        }
        Ok(r)
    }

    fn list_uncached(&mut self, id: &ChunkId) -> Result<ListResult> {
        let failed = |fault| ListResult {
            level: 0,
            len: 0,
            fault: Some(fault),
        };
        let bytes = match self.read_meta(id, "chunk-list node")? {
            Ok(b) => b,
            Err(f) => return Ok(failed(f)),
        };
        let node = match ListNode::decode(&bytes) {
            Ok(n) => n,
            Err(cause) => {
                return Ok(failed(Fault::Invalid {
                    what: format!("chunk-list node {}", id.short()),
                    cause,
                }))
            }
        };
        let mut len = 0u64;
        for ch in &node.children {
            if node.level == 0 {
                if let Some(f) = self.data(&ch.id, ch.len)? {
                    return Ok(failed(f));
                }
            } else {
                let r = self.list(&ch.id, node.level - 1)?;
                if let Some(f) = r.fault {
                    return Ok(failed(f));
                }
                if r.len != ch.len {
                    return Ok(failed(Fault::Invalid {
                        what: format!("chunk-list node {}", id.short()),
                        cause: FormatError::Invalid {
                            what: "chunk-list node",
                            detail: format!(
                                "child {} covers {} bytes, the node records {}",
                                ch.id.short(),
                                r.len,
                                ch.len
                            ),
                        },
                    }));
                }
            }
            len = len.saturating_add(ch.len);
        }
        Ok(ListResult {
            level: node.level,
            len,
            fault: None,
        })
    }
}

/// What reading one pack in full found.
#[derive(Default)]
struct PackOutcome {
    /// The pack cannot be used at all (missing, trailer unreadable, I/O).
    unreadable: Option<StoreError>,
    /// Bytes read.
    bytes: u64,
    /// Chunks verified (sound or not).
    chunks: u64,
    /// Damaged chunks and why, in pack order.
    bad: Vec<(ChunkId, String)>,
    /// The pack's content hashes to its name.
    hash_ok: bool,
}

/// Size of each sequential read.
const READ_SIZE: usize = 8 << 20;

/// Reads a pack front to back: hashes it whole, decodes each frame once
/// and verifies every chunk in it.
fn read_pack(store: &Store, id: &PackId, len: u64, progress: &dyn Progress) -> PackOutcome {
    let mut out = PackOutcome::default();
    let trailer = match store.read_trailer(id) {
        Ok(t) => t,
        Err(e) => {
            out.unreadable = Some(e);
            return out;
        }
    };
    let path = match store.files().remote() {
        Some(b) => std::path::PathBuf::from(b.object_location(&crate::files::pack_name(id))),
        None => store.pack_path(id),
    };
    let io_err = |e: std::io::Error| StoreError::Io {
        path: path.clone(),
        cause: e,
    };
    let mut source: Box<dyn Read + Send> = if store.files().remote().is_some() {
        Box::new(RemotePackRead {
            files: store.files(),
            id: *id,
            pos: 0,
            len,
            buf: Vec::new(),
            at: 0,
        })
    } else {
        match File::open(&path) {
            Ok(f) => Box::new(f),
            Err(e) => {
                out.unreadable = Some(io_err(e));
                return out;
            }
        }
    };
    // Frames in pack order; the chunks of a frame stay together.
    let mut entries = trailer.entries;
    entries.sort_by_key(|e| (e.frame_offset, e.frame_len));
    let mut frames: Vec<&[PackEntry]> = Vec::new();
    let mut rest = &entries[..];
    while let Some(first) = rest.first() {
        let n = rest
            .iter()
            .take_while(|e| e.frame_offset == first.frame_offset && e.frame_len == first.frame_len)
            .count();
        frames.push(&rest[..n]);
        rest = &rest[n..];
    }

    let mut seq = SeqRead {
        source: &mut source,
        len,
        buf: Vec::with_capacity(READ_SIZE * 2),
        buf_off: 0,
        hasher: blake3::Hasher::new(),
        progress,
    };
    let mut next = 0;
    while next < frames.len() {
        // Read at least up to the end of the next frame, then verify every
        // frame the buffer holds in full, in parallel.
        let end = frame_end(frames[next]);
        if let Err(e) = seq.fill_to(end.max(seq.buf_off + seq.buf.len() as u64)) {
            out.unreadable = Some(io_err(e));
            out.bytes = seq.read_so_far();
            return out;
        }
        let have = seq.buf_off + seq.buf.len() as u64;
        let mut stop = next;
        while stop < frames.len() && frame_end(frames[stop]) <= have {
            stop += 1;
        }
        let batch = &frames[next..stop];
        let buf_off = seq.buf_off;
        let buf = &seq.buf;
        let results: Vec<Vec<(ChunkId, String)>> = batch
            .par_iter()
            .map(|f| {
                let start = f[0].frame_offset;
                let flen = f[0].frame_len as usize;
                if start >= buf_off {
                    let s = (start - buf_off) as usize;
                    verify_frame(&buf[s..s + flen], f)
                } else {
                    // Frames overlap (a forged trailer): read it again.
                    match store.files().read_pack_range(id, start, flen as u64) {
                        Ok(b) => verify_frame(&b, f),
                        Err(e) => f
                            .iter()
                            .map(|c| (c.id, format!("frame unreadable: {e}")))
                            .collect(),
                    }
                }
            })
            .collect();
        for (f, bad) in batch.iter().zip(results) {
            out.chunks += f.len() as u64;
            out.bad.extend(bad);
        }
        let keep_from = batch
            .last()
            .map(|f| frame_end(f))
            .unwrap_or(seq.buf_off)
            .max(seq.buf_off);
        seq.discard_before(keep_from);
        next = stop;
    }
    if let Err(e) = seq.fill_to(len) {
        out.unreadable = Some(io_err(e));
        out.bytes = seq.read_so_far();
        return out;
    }
    out.bytes = seq.read_so_far();
    out.hash_ok = *seq.hasher.finalize().as_bytes() == id.0;
    out
}

fn frame_end(f: &[PackEntry]) -> u64 {
    f[0].frame_offset + u64::from(f[0].frame_len)
}

/// Decodes one frame and verifies each of its chunks.
fn verify_frame(frame: &[u8], chunks: &[PackEntry]) -> Vec<(ChunkId, String)> {
    let raw = match pack::decode_frame(frame) {
        Ok(r) => r,
        Err(e) => {
            return chunks
                .iter()
                .map(|c| (c.id, format!("its frame is damaged: {e}")))
                .collect()
        }
    };
    chunks
        .iter()
        .filter_map(|c| match pack::chunk_in_frame(&raw, c) {
            Err(_) => Some((c.id, "chunk lies outside its frame".to_string())),
            Ok(b) if ChunkId::of(b) != c.id => {
                Some((c.id, "content does not match its id".to_string()))
            }
            Ok(_) => None,
        })
        .collect()
}

/// A remote pack read front to back by ranged requests of
/// [`READ_SIZE`] whatever the reader asks for (never the whole pack in
/// memory, never a request per small read).
struct RemotePackRead<'a> {
    files: &'a crate::StoreFiles,
    id: PackId,
    /// Pack offset of the next request.
    pos: u64,
    len: u64,
    /// The last response, served from `at`.
    buf: Vec<u8>,
    at: usize,
}

impl Read for RemotePackRead<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.buf.len() {
            let want = (READ_SIZE as u64).min(self.len - self.pos);
            if want == 0 {
                return Ok(0);
            }
            self.buf = self
                .files
                .read_pack_range(&self.id, self.pos, want)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            self.pos += self.buf.len() as u64;
            self.at = 0;
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A front-to-back reader that hashes everything it reads.
struct SeqRead<'a> {
    source: &'a mut dyn Read,
    len: u64,
    buf: Vec<u8>,
    buf_off: u64,
    hasher: blake3::Hasher,
    progress: &'a dyn Progress,
}

impl SeqRead<'_> {
    fn read_so_far(&self) -> u64 {
        self.buf_off + self.buf.len() as u64
    }

    /// Reads until the buffer reaches file offset `end` (at least one
    /// large read when short), or the file's end.
    fn fill_to(&mut self, end: u64) -> std::io::Result<()> {
        let end = end.min(self.len);
        while self.read_so_far() < end {
            let at = self.read_so_far();
            let want = (self.len - at).min(READ_SIZE as u64).max(end - at);
            let old = self.buf.len();
            self.buf.reserve(want as usize);
            let n = (&mut *self.source).take(want).read_to_end(&mut self.buf)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("pack ends at {at} bytes, {} expected", self.len),
                ));
            }
            let new = &self.buf[old..];
            if new.len() >= 1 << 20 {
                self.hasher.update_rayon(new);
            } else {
                self.hasher.update(new);
            }
            self.progress.bytes(n as u64);
        }
        Ok(())
    }

    /// Drops buffered bytes before file offset `off`.
    fn discard_before(&mut self, off: u64) {
        let n = (off.saturating_sub(self.buf_off) as usize).min(self.buf.len());
        self.buf.drain(..n);
        self.buf_off += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u8) -> Vec<PackId> {
        (0..n).map(|i| PackId::of(&[i])).collect()
    }

    #[test]
    fn subset_parses_and_slices_cover_every_pack_once() {
        assert_eq!(
            DataSelection::parse("2/5"),
            Ok(DataSelection::Slice { n: 2, m: 5 })
        );
        assert_eq!(
            DataSelection::parse("12.5%"),
            Ok(DataSelection::Percent(12.5))
        );
        for bad in ["0/3", "4/3", "1/0", "x", "3", "0%", "101%", "-1%", "1/3/4"] {
            assert!(DataSelection::parse(bad).is_err(), "{bad}");
        }
        let packs = ids(50);
        for m in 1..7u32 {
            for (i, id) in packs.iter().enumerate() {
                let hits = (1..=m)
                    .filter(|&n| DataSelection::Slice { n, m }.selects(i, id))
                    .count();
                assert_eq!(hits, 1, "pack {i} of slices /{m}");
            }
        }
    }

    #[test]
    fn percent_is_stable_and_about_right() {
        let packs = ids(200);
        let pick = |p: f64| -> Vec<bool> {
            packs
                .iter()
                .enumerate()
                .map(|(i, id)| DataSelection::Percent(p).selects(i, id))
                .collect()
        };
        assert_eq!(pick(25.0), pick(25.0));
        assert!(pick(100.0).iter().all(|&b| b));
        let n = pick(25.0).iter().filter(|&&b| b).count();
        assert!((25..=75).contains(&n), "{n} of 200 at 25%");
        // A larger share keeps every pack of a smaller one.
        let (small, large) = (pick(10.0), pick(30.0));
        assert!(small.iter().zip(&large).all(|(s, l)| !s || *l));
    }
}
