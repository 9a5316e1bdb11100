//! `cairn replicate`: copies snapshots to another location (a directory or
//! S3-compatible object storage) that then is a store of its own, with the
//! same store id, readable by every reading command.
//!
//! The plan compares the two sides: snapshots missing at the destination
//! (all, or the ones asked for), the chunks they reach (marked through the
//! source's pack trailers), and the source packs holding those chunks that
//! no pack at the destination holds already. Execution sends, in this
//! order: the config (if the destination has none), the packs (as they
//! are: content-addressed, never re-encoded; each one hashed against its
//! name before it leaves), and the manifests last, oldest first. A replica
//! therefore never lists a snapshot whose data is not all there, and a run
//! that dies half way is resumed by the next, which finds the packs that
//! arrived and sends only the rest.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use cairn_format::{PackId, SnapshotId, StoreConfig};
use cairn_remote::{Backend, RemoteError};
use rayon::prelude::*;

use crate::error::{FormatContext, Result, StoreError};
use crate::files::{manifest_name, pack_name, StoreFiles};
use crate::mark::{Catalog, LiveSet};
use crate::reader::ChunkReader;

/// What to replicate.
#[derive(Clone, Debug, Default)]
pub struct ReplicateOptions {
    /// Only these snapshots (all when `None`).
    pub snapshots: Option<Vec<SnapshotId>>,
}

/// What a replication will send.
#[derive(Debug)]
pub struct ReplicatePlan {
    /// The destination, for messages.
    pub destination: String,
    /// The source config's bytes, when the destination has no config yet.
    pub config: Option<Vec<u8>>,
    /// Snapshots to send, oldest first, with their manifests' bytes.
    pub snapshots: Vec<(SnapshotId, Vec<u8>)>,
    /// Snapshots asked for that the destination has already.
    pub already_there: Vec<SnapshotId>,
    /// Packs to send, with their lengths.
    pub packs: Vec<(PackId, u64)>,
    /// Packs the snapshots need that the destination has already (from an
    /// earlier or interrupted run).
    pub packs_present: usize,
}

impl ReplicatePlan {
    /// Bytes of packs to send.
    pub fn pack_bytes(&self) -> u64 {
        self.packs.iter().map(|(_, l)| l).sum()
    }

    /// Bytes of manifests (and config) to send.
    pub fn metadata_bytes(&self) -> u64 {
        let m: usize = self.snapshots.iter().map(|(_, b)| b.len()).sum();
        (m + self.config.as_ref().map_or(0, Vec::len)) as u64
    }
}

/// What a replication did.
#[derive(Debug, Default)]
pub struct ReplicateReport {
    /// Snapshots now at the destination that were not before.
    pub snapshots_sent: usize,
    /// Packs sent.
    pub packs_sent: usize,
    /// Bytes sent (packs, manifests, config).
    pub bytes_sent: u64,
    /// Objects read back and checked (with verify).
    pub verified: usize,
}

/// Reports progress of a replication.
pub trait ReplicateProgress: Sync {
    /// Sending starts: this many packs and bytes.
    fn start(&self, _packs: u64, _bytes: u64) {}
    /// A pack arrived.
    fn pack_sent(&self, _bytes: u64) {}
}

/// Ignores progress.
pub struct NoReplicateProgress;
impl ReplicateProgress for NoReplicateProgress {}

/// Compares `source` with `dest` and says what must be sent.
pub fn plan(
    source: &StoreFiles,
    dest: &dyn Backend,
    opts: &ReplicateOptions,
) -> Result<ReplicatePlan> {
    let destination = dest.location();
    let config = match dest.get("config") {
        Ok(bytes) => {
            let theirs = StoreConfig::decode(&bytes).what(dest.object_location("config"))?;
            if theirs.store_id != source.config().store_id {
                return Err(StoreError::Usage(format!(
                    "{destination} holds another store (store id {}, not {}); replicate into an empty location or a replica of this store",
                    hex::encode(theirs.store_id),
                    hex::encode(source.config().store_id)
                )));
            }
            None
        }
        Err(RemoteError::NotFound { .. }) => {
            if !dest.list("snapshots")?.is_empty() || !dest.list("packs")?.is_empty() {
                return Err(StoreError::Usage(format!(
                    "{destination} holds packs or snapshots but no store config; refusing to replicate into it"
                )));
            }
            Some(source.config_bytes()?)
        }
        Err(e) => return Err(e.into()),
    };
    let theirs: BTreeSet<String> = dest
        .list("snapshots")?
        .into_iter()
        .map(|o| o.name)
        .collect();
    let ours = source.manifest_ids()?;
    let wanted: Vec<SnapshotId> = match &opts.snapshots {
        None => ours.iter().copied().collect(),
        Some(ids) => {
            for id in ids {
                if !ours.contains(id) {
                    return Err(StoreError::UnknownSnapshot { id: id.to_string() });
                }
            }
            let set: BTreeSet<SnapshotId> = ids.iter().copied().collect();
            set.into_iter().collect()
        }
    };
    let (already_there, to_send): (Vec<SnapshotId>, Vec<SnapshotId>) = wanted
        .into_iter()
        .partition(|id| theirs.contains(&id.to_string()));

    let catalog = Catalog::read(source)?;
    let reader = ChunkReader::with_locator(source, &catalog);
    let mut live = LiveSet::default();
    let mut snapshots = Vec::new();
    for id in to_send {
        let bytes = source.manifest_bytes(id)?;
        let m = crate::files::decode_manifest(id, &bytes)?;
        live.mark(&reader, &m)?;
        snapshots.push((id, bytes));
    }

    // A needed chunk is covered if any pack at the destination holds it;
    // the others come from their home pack here.
    let present: BTreeMap<PackId, u64> = dest
        .list("packs")?
        .into_iter()
        .filter_map(|o| Some((o.name.strip_suffix(".pack")?.parse().ok()?, o.size)))
        .collect();
    let mut covered: HashSet<cairn_format::ChunkId> = HashSet::new();
    for (pack, len, entries) in catalog.packs() {
        if present.get(pack) == Some(&len) {
            covered.extend(
                entries
                    .iter()
                    .map(|e| e.id)
                    .filter(|id| live.chunks.contains(id)),
            );
        }
    }
    let mut needed: BTreeSet<PackId> = BTreeSet::new();
    let mut packs_present = BTreeSet::new();
    for id in &live.chunks {
        let home = catalog
            .home_pack(id)
            .ok_or_else(|| StoreError::ChunkMissing {
                id: id.to_hex(),
                context: "a snapshot to replicate".into(),
            })?;
        if covered.contains(id) {
            if present.contains_key(home) {
                packs_present.insert(*home);
            }
        } else {
            needed.insert(*home);
        }
    }
    let lens: BTreeMap<PackId, u64> = catalog.packs().map(|(p, l, _)| (*p, l)).collect();
    Ok(ReplicatePlan {
        destination,
        config,
        snapshots,
        already_there,
        packs: needed.into_iter().map(|p| (p, lens[&p])).collect(),
        packs_present: packs_present.len(),
    })
}

/// Sends what `plan` says, `jobs` packs at a time; with `verify`, reads
/// every object sent back and checks it.
pub fn execute(
    source: &StoreFiles,
    dest: &dyn Backend,
    plan: &ReplicatePlan,
    jobs: usize,
    verify: bool,
    progress: &dyn ReplicateProgress,
) -> Result<ReplicateReport> {
    let sent_bytes = AtomicU64::new(0);
    let verified = AtomicU64::new(0);
    for dir in ["packs", "snapshots", "tmp"] {
        dest.create_dir(dir)?;
    }
    if let Some(config) = &plan.config {
        send(dest, "config", config.clone(), verify, &verified)?;
        sent_bytes.fetch_add(config.len() as u64, Ordering::Relaxed);
    }
    progress.start(plan.packs.len() as u64, plan.pack_bytes());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs.max(1))
        .thread_name(|i| format!("cairn-replicate-{i}"))
        .build()
        .map_err(|e| StoreError::Usage(format!("cannot start {jobs} upload threads: {e}")))?;
    let first_error: Mutex<Option<StoreError>> = Mutex::new(None);
    pool.install(|| {
        plan.packs.par_iter().for_each(|(id, _)| {
            if first_error.lock().expect("error slot").is_some() {
                return;
            }
            let sent = source.read_pack(id).and_then(|bytes| {
                // Packs are named by the hash of their bytes: a damaged
                // one is never shipped as if it were sound.
                if PackId::of(&bytes) != *id {
                    return Err(StoreError::Usage(format!(
                        "pack {id} in {} does not match its name (damaged); run `cairn check` and `cairn repair`, then replicate again",
                        source.location()
                    )));
                }
                let n = bytes.len() as u64;
                send(dest, &pack_name(id), bytes, verify, &verified)?;
                Ok(n)
            });
            match sent {
                Ok(n) => {
                    sent_bytes.fetch_add(n, Ordering::Relaxed);
                    progress.pack_sent(n);
                    crate::gate::pause_point("replicate-after-pack");
                }
                Err(e) => {
                    first_error.lock().expect("error slot").get_or_insert(e);
                }
            }
        })
    });
    if let Some(e) = first_error.into_inner().expect("error slot") {
        return Err(e);
    }
    // Manifests last, oldest first: a snapshot appears only when all it
    // needs is there.
    for (id, bytes) in &plan.snapshots {
        send(dest, &manifest_name(*id), bytes.clone(), verify, &verified)?;
        sent_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    }
    Ok(ReplicateReport {
        snapshots_sent: plan.snapshots.len(),
        packs_sent: plan.packs.len(),
        bytes_sent: sent_bytes.into_inner(),
        verified: verified.into_inner() as usize,
    })
}

/// Puts one object; with `verify`, reads it back and compares.
fn send(
    dest: &dyn Backend,
    name: &str,
    bytes: Vec<u8>,
    verify: bool,
    verified: &AtomicU64,
) -> Result<()> {
    let digest = verify.then(|| blake3::hash(&bytes));
    dest.put(name, bytes)?;
    if let Some(digest) = digest {
        let back = dest.get(name)?;
        if blake3::hash(&back) != digest {
            return Err(StoreError::Usage(format!(
                "{}: what was read back differs from what was sent",
                dest.object_location(name)
            )));
        }
        verified.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}
