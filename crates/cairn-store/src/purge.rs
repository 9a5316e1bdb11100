//! `cairn purge-tenant`: removes one HitKeep tenant from every snapshot,
//! physically, with evidence.
//!
//! 1. **Plan** (store lock): walk every snapshot and pick what belongs to
//!    the tenant: everything under a `tenants/<uuid>/` directory (data
//!    path and archive: its database, WAL, archive tree), files classed as
//!    its database, WAL or archives, and, for each of its sites (from the
//!    snapshots' boundaries, plus `--site`), the default-layout archive
//!    files `site_<site>_*.parquet`, `assets/qr-codes/<site>/` and
//!    `imports/<site>/`. Directories left empty by the purge go too. The
//!    chunks reachable from the dropped entries are the tenant's chunks.
//! 2. **Rewrite** (store lock): each snapshot holding the tenant gets a
//!    new manifest (the first free second after the old id; labels
//!    `purged-tenant` and `rewritten-from`) whose trees leave those entries
//!    out; unchanged subtrees keep their ids. The new manifest is written
//!    before the old one is removed; a rerun after a crash reuses a
//!    rewritten manifest instead of making a second one.
//! 3. **Prune** ([`crate::prune`]) with no tolerance for dead chunks in any
//!    pack: every pack with a chunk no snapshot references is rewritten or
//!    deleted. That also removes the tenant's data left by snapshots
//!    forgotten earlier, and lets a rerun finish an interrupted purge.
//! 4. **Proof**: every pack trailer is read again, and no pack may hold a
//!    chunk that no remaining snapshot references; then, under the store
//!    lock, no snapshot may still hold a file of the tenant. (Chunks the
//!    tenant shared with others, such as all-zero blocks, stay: they are
//!    not the tenant's data.)

use std::collections::{BTreeMap, BTreeSet, HashSet};

use cairn_format::{
    ChunkId, EntryClass, EntryKind, Manifest, PackId, SnapshotId, SourceRoot, TreeEntry, TreeNode,
};

use crate::error::{FormatContext, Result, StoreError};
use crate::files::StoreFiles;
use crate::lock::LockOptions;
use crate::packer::ChunkSink;
use crate::prune::{self, LiveSet, PruneOptions, PruneReport};
use crate::reader::{ChunkReader, FrameCache};
use crate::store::Store;
use crate::tree::load_tree;

/// Manifest label naming the tenant a rewrite removed.
pub const LABEL_PURGED: &str = "purged-tenant";
/// Manifest label naming the snapshot a rewrite replaced.
pub const LABEL_FROM: &str = "rewritten-from";

/// What to remove.
#[derive(Clone, Debug)]
pub struct PurgeTarget {
    /// The tenant's uuid.
    pub tenant: String,
    /// Its sites (found in boundaries, plus those given).
    pub sites: BTreeSet<String>,
}

impl PurgeTarget {
    /// Whether the file at `rel` (components under root `label`) with
    /// class `class` belongs to the tenant.
    fn owns_file(&self, rel: &[String], class: &EntryClass) -> bool {
        let t = &self.tenant;
        match class {
            EntryClass::TenantDb(x) | EntryClass::Wal(Some(x)) if x == t => return true,
            EntryClass::Archive {
                tenant: Some(x), ..
            } if x == t => return true,
            EntryClass::Archive { tenant: None, site } if self.sites.contains(site) => return true,
            EntryClass::Asset | EntryClass::Import
                if rel.iter().any(|c| self.sites.contains(c)) =>
            {
                return true
            }
            _ => {}
        }
        self.owns_dir(rel)
    }

    /// Whether everything at or below `rel` belongs to the tenant.
    fn owns_dir(&self, rel: &[String]) -> bool {
        rel.windows(2)
            .any(|w| w[0] == "tenants" && w[1] == self.tenant)
    }
}

/// A file a purge drops from a snapshot.
#[derive(Clone, Debug)]
pub struct DroppedFile {
    /// The source root's label (`data`, `archive`, ...).
    pub root: String,
    /// Its path under the root.
    pub path: String,
    /// Its size.
    pub size: u64,
}

/// One snapshot holding the tenant.
#[derive(Clone, Debug)]
pub struct SnapshotPurge {
    /// The snapshot as it is.
    pub old: SnapshotId,
    /// Its rewrite, once written.
    pub new: Option<SnapshotId>,
    /// Files dropped from it.
    pub dropped: Vec<DroppedFile>,
}

/// The purge plan.
pub struct PurgePlan {
    /// What is removed.
    pub target: PurgeTarget,
    /// Snapshots holding the tenant.
    pub snapshots: Vec<SnapshotPurge>,
    /// Snapshots already rewritten by an interrupted purge: (old, new).
    pub resumed: Vec<(SnapshotId, SnapshotId)>,
    tenant: LiveSet,
}

impl PurgePlan {
    /// Chunks reachable from the tenant's files.
    pub fn tenant_chunks(&self) -> &HashSet<ChunkId> {
        &self.tenant.chunks
    }
}

/// Walks one snapshot's trees, dropping the tenant's entries; writes the
/// new tree nodes through `sink` when given (else only computes them).
struct TreeFilter<'a, 'r> {
    target: &'a PurgeTarget,
    reader: &'a ChunkReader<'r>,
    sink: Option<&'a ChunkSink<'r>>,
    cache: FrameCache,
    tenant: &'a mut LiveSet,
    dropped: Vec<DroppedFile>,
    files: u64,
    dirs: u64,
    bytes: u64,
}

impl TreeFilter<'_, '_> {
    /// The tree `id` without the tenant: `None` if nothing changed,
    /// `Some(None)` if nothing is left of a directory that had entries.
    fn tree(
        &mut self,
        label: &str,
        id: &ChunkId,
        rel: &mut Vec<String>,
    ) -> Result<Option<Option<ChunkId>>> {
        let context = || format!("{label}/{}", rel.join("/"));
        let node = load_tree(self.reader, id, &mut self.cache, &context)?;
        let mut out = TreeNode::default();
        let mut changed = false;
        for e in &node.entries {
            let name = String::from_utf8_lossy(&e.name).into_owned();
            rel.push(name);
            let kept = self.entry(label, e, rel)?;
            rel.pop();
            match kept {
                None => out.entries.push(e.clone()),
                Some(Some(new)) => {
                    changed = true;
                    out.entries.push(new);
                }
                Some(None) => changed = true,
            }
        }
        if !changed {
            return Ok(None);
        }
        if out.entries.is_empty() && !node.entries.is_empty() {
            self.dirs += 1;
            return Ok(Some(None));
        }
        let bytes = out.encode().what("tree node")?;
        let new_id = match self.sink {
            Some(sink) => sink.put_meta(bytes)?,
            None => ChunkId::of(&bytes),
        };
        Ok(Some(Some(new_id)))
    }

    /// One entry: `None` unchanged, `Some(None)` dropped, `Some(Some(e))`
    /// replaced.
    fn entry(
        &mut self,
        label: &str,
        e: &TreeEntry,
        rel: &mut Vec<String>,
    ) -> Result<Option<Option<TreeEntry>>> {
        let whole = match &e.kind {
            EntryKind::Dir(_) => self.target.owns_dir(rel),
            _ => self.target.owns_file(rel, &e.class),
        };
        if whole {
            self.drop_entry(label, e, rel)?;
            return Ok(Some(None));
        }
        let EntryKind::Dir(id) = &e.kind else {
            return Ok(None);
        };
        Ok(match self.tree(label, id, rel)? {
            None => None,
            Some(None) => Some(None),
            Some(Some(new_id)) => Some(Some(TreeEntry {
                kind: EntryKind::Dir(new_id),
                ..e.clone()
            })),
        })
    }

    fn drop_entry(&mut self, label: &str, e: &TreeEntry, rel: &[String]) -> Result<()> {
        let context = || format!("{label}/{}", rel.join("/"));
        self.tenant
            .entry(self.reader, &mut self.cache, &context, e)?;
        self.count(label, e, rel)
    }

    /// Counts (and lists) the files of a dropped entry.
    fn count(&mut self, label: &str, e: &TreeEntry, rel: &[String]) -> Result<()> {
        match &e.kind {
            EntryKind::File(c) => {
                self.files += 1;
                self.bytes += c.size;
                self.dropped.push(DroppedFile {
                    root: label.to_string(),
                    path: rel.join("/"),
                    size: c.size,
                });
            }
            EntryKind::Symlink(_) => {
                self.files += 1;
                self.dropped.push(DroppedFile {
                    root: label.to_string(),
                    path: rel.join("/"),
                    size: 0,
                });
            }
            EntryKind::Dir(id) => {
                self.dirs += 1;
                let context = || format!("{label}/{}", rel.join("/"));
                let node = load_tree(self.reader, id, &mut self.cache, &context)?;
                for child in &node.entries {
                    let mut r = rel.to_vec();
                    r.push(String::from_utf8_lossy(&child.name).into_owned());
                    self.count(label, child, &r)?;
                }
            }
        }
        Ok(())
    }
}

/// The manifest `m` without the tenant, or `None` if it holds nothing of
/// it. Writes new tree nodes through `sink` when given.
fn filter_manifest(
    target: &PurgeTarget,
    reader: &ChunkReader<'_>,
    sink: Option<&ChunkSink<'_>>,
    tenant: &mut LiveSet,
    m: &Manifest,
) -> Result<Option<(Manifest, Vec<DroppedFile>)>> {
    let mut f = TreeFilter {
        target,
        reader,
        sink,
        cache: FrameCache::default(),
        tenant,
        dropped: Vec::new(),
        files: 0,
        dirs: 0,
        bytes: 0,
    };
    let mut roots: Vec<SourceRoot> = Vec::new();
    let mut changed = false;
    for root in &m.roots {
        let mut r = root.clone();
        if let Some(t) = &root.tree {
            match f.tree(&root.label, t, &mut Vec::new())? {
                None => {}
                Some(new) => {
                    changed = true;
                    // An emptied root stays, as an empty directory.
                    let empty = TreeNode::default().encode().what("tree node")?;
                    r.tree = Some(match (new, sink) {
                        (Some(id), _) => id,
                        (None, Some(sink)) => sink.put_meta(empty)?,
                        (None, None) => ChunkId::of(&empty),
                    });
                }
            }
        }
        if let Some(e) = &root.file {
            if let Some(None) = f.entry(&root.label, e, &mut Vec::new())? {
                changed = true;
                continue;
            }
        }
        roots.push(r);
    }
    if !changed {
        return Ok(None);
    }
    let mut out = m.clone();
    out.roots = roots;
    out.stats.files = out.stats.files.saturating_sub(f.files);
    out.stats.dirs = out.stats.dirs.saturating_sub(f.dirs);
    out.stats.logical_bytes = out.stats.logical_bytes.saturating_sub(f.bytes);
    out.labels
        .insert(LABEL_PURGED.into(), target.tenant.clone());
    out.labels.insert(LABEL_FROM.into(), m.id.to_string());
    if let Some(b) = &mut out.boundary {
        let t = &target.tenant;
        b.tenants.retain(|s| &s.id != t);
        b.findings.retain(|s| !s.contains(t.as_str()));
        b.excluded.retain(|s| !s.contains(t.as_str()));
        b.gave_up.retain(|s| !s.contains(t.as_str()));
    }
    Ok(Some((out, f.dropped)))
}

/// Refuses what cannot be a tenant directory name.
pub fn check_tenant_id(tenant: &str) -> Result<()> {
    if tenant.is_empty() || tenant.contains('/') || tenant == "." || tenant == ".." {
        return Err(StoreError::Usage(format!(
            "{tenant:?} is not a tenant id (the name of a directory under tenants/)"
        )));
    }
    Ok(())
}

/// Plans the purge of `tenant` (plus `sites`, which are added to those
/// the snapshots' boundaries name for it).
pub fn plan(store: &Store, tenant: &str, sites: &[String]) -> Result<PurgePlan> {
    check_tenant_id(tenant)?;
    let mut manifests = Vec::new();
    for id in store.manifest_ids()? {
        manifests.push(store.load_manifest(id)?);
    }
    let mut target = PurgeTarget {
        tenant: tenant.to_string(),
        sites: sites.iter().cloned().collect(),
    };
    for m in &manifests {
        for t in m.boundary.iter().flat_map(|b| &b.tenants) {
            if t.id == tenant {
                target.sites.extend(t.sites.iter().cloned());
            }
        }
    }
    let reader = ChunkReader::new(store);
    let mut tenant_chunks = LiveSet::default();
    let mut snapshots = Vec::new();
    let mut resumed = Vec::new();
    let rewritten: BTreeMap<(String, String), SnapshotId> = manifests
        .iter()
        .filter_map(|m| {
            Some((
                (
                    m.labels.get(LABEL_FROM)?.clone(),
                    m.labels.get(LABEL_PURGED)?.clone(),
                ),
                m.id,
            ))
        })
        .collect();
    for m in &manifests {
        let Some((_, dropped)) = filter_manifest(&target, &reader, None, &mut tenant_chunks, m)?
        else {
            continue;
        };
        match rewritten.get(&(m.id.to_string(), tenant.to_string())) {
            Some(new) => resumed.push((m.id, *new)),
            None => snapshots.push(SnapshotPurge {
                old: m.id,
                new: None,
                dropped,
            }),
        }
    }
    Ok(PurgePlan {
        target,
        snapshots,
        resumed,
        tenant: tenant_chunks,
    })
}

/// Rewrites every snapshot of `plan` without the tenant and removes the
/// old manifests (step 2). Fills in the new ids.
pub fn rewrite(store: &Store, plan: &mut PurgePlan) -> Result<()> {
    store.files().require_local("purge-tenant")?;
    let reader = ChunkReader::new(store);
    let sink = ChunkSink::new(store);
    let mut scratch = LiveSet::default();
    let mut new_manifests = Vec::new();
    let written = (|| -> Result<()> {
        for s in &plan.snapshots {
            let m = store.load_manifest(s.old)?;
            if let Some((new, _)) =
                filter_manifest(&plan.target, &reader, Some(&sink), &mut scratch, &m)?
            {
                new_manifests.push(new);
            }
        }
        sink.finish()
    })();
    if let Err(e) = written {
        sink.abandon();
        return Err(e);
    }
    let mut taken = store.manifest_ids()?;
    for (s, mut m) in plan.snapshots.iter_mut().zip(new_manifests) {
        let mut id = SnapshotId(s.old.0 + 1);
        while taken.contains(&id) {
            id = SnapshotId(id.0 + 1);
        }
        taken.insert(id);
        m.id = id;
        store.write_manifest(&m)?;
        store.remove_manifest(s.old)?;
        s.new = Some(id);
    }
    for (old, _) in &plan.resumed {
        store.remove_manifest(*old)?;
    }
    store.index().flush()?;
    Ok(())
}

/// The evidence after a purge.
#[derive(Clone, Debug, Default)]
pub struct PurgeProof {
    /// Chunks the tenant referenced (in the snapshots rewritten now).
    pub tenant_chunks: usize,
    /// Of those, chunks a remaining snapshot still references (shared
    /// content, such as all-zero blocks; not the tenant's data).
    pub shared_chunks: usize,
    /// Chunks no remaining snapshot references that some pack still
    /// holds (must be empty: the tenant's data from forgotten snapshots
    /// would be among them).
    pub still_stored: Vec<(PackId, ChunkId)>,
    /// Of `still_stored`, those the tenant referenced.
    pub tenant_still_stored: usize,
    /// Snapshots that still hold files of the tenant (must be empty; a
    /// snapshot taken during the purge of a data path that still has the
    /// tenant would be one). Filled in by the caller under the store lock.
    pub snapshots_holding: Vec<SnapshotId>,
    /// Packs read for the proof.
    pub packs_read: usize,
}

impl PurgeProof {
    /// Whether the purge is complete.
    pub fn verified(&self) -> bool {
        self.still_stored.is_empty() && self.snapshots_holding.is_empty()
    }
}

/// Steps 3 and 4: prunes with no tolerance for dead chunks anywhere (so
/// the tenant's data in snapshots forgotten earlier goes too, and a rerun
/// finishes an interrupted purge), then reads every pack trailer again and
/// lists any chunk no remaining snapshot references. The caller holds
/// [`prune::prune_lock`] and no store lock.
pub fn prune_and_prove(
    files: &StoreFiles,
    plan: &PurgePlan,
    lock: &LockOptions,
) -> Result<(PruneReport, PurgeProof)> {
    let opts = PruneOptions {
        max_unused_percent: 0.0,
        ..PruneOptions::default()
    };
    let prune_plan = prune::plan(files, &opts)?;
    let report = prune::execute(files, &prune_plan, lock)?;
    // The proof reads the packs as they are now.
    let after = prune::plan(files, &PruneOptions::default())?;
    let live = after.live();
    let mut proof = PurgeProof {
        tenant_chunks: plan.tenant_chunks().len(),
        shared_chunks: plan
            .tenant_chunks()
            .iter()
            .filter(|c| live.contains(c))
            .count(),
        ..PurgeProof::default()
    };
    proof.packs_read = after.packs.len();
    for (pack, chunk) in after.unreferenced() {
        if plan.tenant_chunks().contains(&chunk) {
            proof.tenant_still_stored += 1;
        }
        proof.still_stored.push((pack, chunk));
    }
    Ok((report, proof))
}
