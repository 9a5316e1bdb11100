//! Repair: drop what is damaged, keep everything that is not, and heal
//! from the live data path when the same bytes are still there.
//!
//! Plan, then execute:
//! 1. **Plan**: read every pack; a pack whose header or trailer is
//!    unreadable loses every chunk the index placed in it; otherwise each
//!    frame is decoded and each chunk checked against its id. A pack with
//!    any damage gets a rewrite: its intact frames are kept (copied as they
//!    are, or re-encoded without the damaged chunks).
//! 2. **Execute**: write each rewritten pack (atomically), index it, then
//!    forget and delete the damaged one. The damaged chunks are then in no
//!    pack and no index entry, so the next snapshot that reads the same
//!    bytes stores them again, and every old snapshot that needs them is
//!    whole again (chunk ids are content hashes). With a data path, repair
//!    takes that snapshot itself, reading every file (`full_read`), since
//!    the unchanged-file fast path would otherwise reuse the damaged lists.
//! 3. **Report**: a structural check afterwards names every snapshot and
//!    file that still needs a missing chunk; the report is also written to
//!    `STORE/repairs/<timestamp>.txt`.

use std::fs;
use std::io::BufWriter;

use cairn_format::pack::{self, FrameChunk, PackBuilder, PackEntry};
use cairn_format::{ChunkId, PackId};

use crate::atomic;
use crate::error::{FormatContext, IoContext, Result};
use crate::packer::seal_pack;
use crate::store::Store;

/// What repair will do to one damaged pack.
#[derive(Clone, Debug)]
pub struct PackRepair {
    /// The damaged pack.
    pub pack: PackId,
    /// Why it is damaged (first problem found).
    pub problem: String,
    /// Chunks lost with it.
    pub lost: Vec<ChunkId>,
    /// Intact frames kept: (encoded frame, its chunks).
    pub keep: Vec<(Vec<u8>, Vec<FrameChunk>)>,
}

/// The repair plan.
#[derive(Clone, Debug, Default)]
pub struct RepairPlan {
    /// Packs to rewrite (or drop, when nothing in them is intact).
    pub packs: Vec<PackRepair>,
    /// Packs read.
    pub packs_read: u64,
}

impl RepairPlan {
    /// Chunks the repair drops.
    pub fn lost_chunks(&self) -> usize {
        self.packs.iter().map(|p| p.lost.len()).sum()
    }
}

fn group_by_frame(entries: &[PackEntry]) -> Vec<Vec<PackEntry>> {
    let mut frames: Vec<Vec<PackEntry>> = Vec::new();
    for e in entries {
        match frames.last_mut() {
            Some(f) if f[0].frame_offset == e.frame_offset => f.push(*e),
            _ => frames.push(vec![*e]),
        }
    }
    frames
}

/// Reads every pack and plans the rewrite of the damaged ones.
pub fn plan(store: &Store) -> Result<RepairPlan> {
    // The plan reads the pack files themselves (a remote store is
    // checked with `check --read-data`).
    store.files().require_local("repair")?;
    let mut plan = RepairPlan::default();
    // Chunks the index places in each pack: the only record of what an
    // unreadable pack held.
    for (id, _) in store.pack_files()? {
        plan.packs_read += 1;
        let path = store.pack_path(&id);
        let bytes = fs::read(&path).at(&path)?;
        let trailer = match pack::parse_pack(&bytes) {
            Ok(t) => t,
            Err(e) => {
                let lost = store.index().chunks_in_pack(&id)?;
                plan.packs.push(PackRepair {
                    pack: id,
                    problem: format!("unreadable: {e}"),
                    lost,
                    keep: Vec::new(),
                });
                continue;
            }
        };
        let mut repair = PackRepair {
            pack: id,
            problem: String::new(),
            lost: Vec::new(),
            keep: Vec::new(),
        };
        for frame in group_by_frame(&trailer.entries) {
            let f = &frame[0];
            let start = f.frame_offset as usize;
            let encoded = &bytes[start..start + f.frame_len as usize];
            let raw = match pack::decode_frame(encoded) {
                Ok(r) => r,
                Err(e) => {
                    if repair.problem.is_empty() {
                        repair.problem = format!("frame at {start}: {e}");
                    }
                    repair.lost.extend(frame.iter().map(|e| e.id));
                    continue;
                }
            };
            let mut good = Vec::new();
            let mut good_raw = Vec::new();
            for e in &frame {
                match pack::chunk_in_frame(&raw, e) {
                    Ok(c) if ChunkId::of(c) == e.id => {
                        good.push((e.id, e.kind, e.len));
                        good_raw.extend_from_slice(c);
                    }
                    _ => {
                        if repair.problem.is_empty() {
                            repair.problem =
                                format!("chunk {} does not match its id", e.id.short());
                        }
                        repair.lost.push(e.id);
                    }
                }
            }
            if good.len() == frame.len() {
                repair.keep.push((encoded.to_vec(), good));
            } else if !good.is_empty() {
                let level = store.config().compression.zstd_level;
                let frame = pack::encode_frame(&good_raw, level).what("repaired frame")?;
                repair.keep.push((frame, good));
            }
        }
        if PackId::of(&bytes) != id && repair.lost.is_empty() {
            // Damage outside every frame (header or padding): rewrite the
            // pack so its name matches its content again.
            repair.problem = "content does not match the pack's name".into();
        }
        if !repair.problem.is_empty() {
            plan.packs.push(repair);
        }
    }
    Ok(plan)
}

/// Rewrites and drops the damaged packs of `plan`. Returns the new packs.
pub fn execute(store: &Store, plan: &RepairPlan) -> Result<Vec<PackId>> {
    store.files().require_local("repair")?;
    let mut written = Vec::new();
    for r in &plan.packs {
        if !r.keep.is_empty() {
            let (f, temp) = atomic::create_temp(&store.root().join("tmp"), "repair")?;
            let mut b = PackBuilder::new(BufWriter::new(f)).at(&temp)?;
            for (frame, chunks) in &r.keep {
                b.add_frame(frame, chunks).at(&temp)?;
            }
            let (id, trailer, len, _) = seal_pack(store.files(), b, &temp)?;
            store.index().add_pack(id, len, &trailer.entries)?;
            written.push(id);
        }
        // Forget the old pack; the chunks the new pack holds stay indexed
        // through it.
        store.index().remove_pack(r.pack)?;
        store.index().forget_files()?;
        let path = store.pack_path(&r.pack);
        fs::remove_file(&path).at(&path)?;
        atomic::sync_dir(&store.root().join("packs"))?;
    }
    store.index().flush()?;
    Ok(written)
}

/// Stores a repair report as `STORE/repairs/<name>.txt`, atomically.
pub fn write_report(store: &Store, name: &str, text: &str) -> Result<std::path::PathBuf> {
    store.write_report("repairs", name, text)
}
