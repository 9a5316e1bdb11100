//! Store statistics: logical size, stored size, dedup ratio, and what each
//! snapshot added.

use cairn_format::SnapshotId;

use crate::error::Result;
use crate::store::Store;

/// One snapshot's line in the stats.
#[derive(Clone, Debug)]
pub struct SnapshotLine {
    /// Its id.
    pub id: SnapshotId,
    /// Bytes of file content it holds.
    pub logical_bytes: u64,
    /// Files it holds.
    pub files: u64,
    /// Bytes it added to packs.
    pub added_bytes: u64,
    /// New raw data bytes it stored.
    pub new_data_bytes: u64,
    /// New raw metadata bytes it stored.
    pub new_meta_bytes: u64,
}

/// The store's statistics.
#[derive(Clone, Debug)]
pub struct StoreStats {
    /// Snapshots.
    pub snapshots: Vec<SnapshotLine>,
    /// Sum of every snapshot's logical bytes.
    pub logical_bytes: u64,
    /// Bytes on disk: packs, manifests, config (the index is a cache and not counted).
    pub stored_bytes: u64,
    /// Pack files.
    pub packs: u64,
    /// Chunks indexed.
    pub chunks: u64,
    /// `logical_bytes / stored_bytes`.
    pub dedup_ratio: f64,
    /// Pack bytes no snapshot needs (what `prune --max-unused 0` would
    /// free, estimated from each dead chunk's share of its frame); `None`
    /// when a snapshot could not be read in full (`cairn check` says why).
    pub reclaimable_bytes: Option<u64>,
}

/// Computes the statistics of `store`.
pub fn stats(store: &Store) -> Result<StoreStats> {
    let packs = store.pack_files()?;
    let stored: u64 = packs.values().sum::<u64>() + store.files().metadata_bytes()?;
    let snapshots: Vec<SnapshotLine> = store
        .snapshots()?
        .into_iter()
        .map(|m| SnapshotLine {
            id: m.id,
            logical_bytes: m.stats.logical_bytes,
            files: m.stats.files,
            added_bytes: m.stats.added_pack_bytes,
            new_data_bytes: m.stats.new_data_bytes,
            new_meta_bytes: m.stats.new_meta_bytes,
        })
        .collect();
    let logical: u64 = snapshots.iter().map(|s| s.logical_bytes).sum();
    let reclaimable = crate::prune::plan(store.files(), &Default::default())
        .ok()
        .map(|p| p.unused_now());
    Ok(StoreStats {
        reclaimable_bytes: reclaimable,
        logical_bytes: logical,
        stored_bytes: stored,
        packs: packs.len() as u64,
        chunks: store.index().chunk_count()? as u64,
        dedup_ratio: if stored == 0 {
            0.0
        } else {
            logical as f64 / stored as f64
        },
        snapshots,
    })
}
