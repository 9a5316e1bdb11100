//! The in-memory map from chunk id to (pack number, entry number).
//!
//! sled holds one record per pack (its trailer entries, see [`record`]),
//! not one per chunk: measured here, sled 0.34 took about 17 µs and a
//! few hundred bytes of memory per inserted 32-byte key, which for the
//! 4 KiB chunks of a DuckDB file was more than the rest of a snapshot
//! together. This map answers "where might this id be" from memory in
//! 12 bytes per chunk: the first 8 bytes of the id and an ordinal that
//! names the pack and the entry's position in that pack's record. A prefix
//! match is only a candidate; [`Index`](crate::Index) confirms it against
//! the full id in the pack's record before it says yes, so a prefix
//! collision can cost a read, never a wrong answer.
//!
//! Ordinals: each pack added gets a range of them, one per entry of its
//! record (`batches` maps a range back to its pack number). They are
//! never reused while the map lives, which bounds a map to 2³² entries
//! added (48 GiB of map; [`MapFull`] past that).
//!
//! The map is a few sorted runs, merged like a binary counter (a run is
//! merged into the one before it once it is at least half its length), so
//! adding a pack costs O(entries · log) amortised and a lookup is a binary
//! search per run (at most about log₂ of the pack count runs). A run is
//! stored in blocks of [`BLOCK`] keys, and a merge frees each input block
//! as soon as it is consumed, so merging never holds a run twice: a first
//! snapshot of a 10 GB data path (2.45 million chunks) peaked at 73 MiB
//! for the map when runs were single vectors of 16-byte slots, against
//! 29 MiB of keys.
//!
//! In front of the runs sits a one-bit-per-bucket filter over the ids'
//! leading bits, 16 to 32 buckets per key (2–4 bytes): an id whose bucket is empty
//! (most ids a first snapshot looks up) is known absent after one memory
//! read instead of a binary search per run (which was a tenth of a first
//! snapshot's CPU time).
//!
//! [`record`]: crate::record

use std::collections::HashSet;

/// One chunk's place: id prefix, pack number, entry number in the pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Slot {
    /// First 8 bytes of the chunk id, big-endian (so slots sort like ids).
    pub prefix: u64,
    /// The pack's number (key of its `entries` and `packno` records).
    pub pack_no: u32,
    /// Position of the entry in the pack's `entries` record.
    pub entry: u32,
}

/// The id prefix a slot is keyed by.
pub(crate) fn prefix_of(id: &[u8; 32]) -> u64 {
    u64::from_be_bytes(id[..8].try_into().expect("8 bytes"))
}

/// The map would need more than 2³² ordinals.
#[derive(Debug)]
pub(crate) struct MapFull;

/// A stored slot: prefix (high and low half) and ordinal, 12 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    hi: u32,
    lo: u32,
    ordinal: u32,
}

impl Key {
    #[inline]
    fn prefix(&self) -> u64 {
        (u64::from(self.hi) << 32) | u64::from(self.lo)
    }

    /// The least key with prefix `prefix` (ordinal 0).
    fn first_of(prefix: u64) -> Self {
        Self {
            hi: (prefix >> 32) as u32,
            lo: prefix as u32,
            ordinal: 0,
        }
    }
}

/// Keys per block of a run (768 KiB).
const BLOCK: usize = 1 << 16;

/// A sorted run of keys, in blocks of [`BLOCK`] keys (the last may be
/// shorter).
#[derive(Default)]
struct Run {
    blocks: Vec<Vec<Key>>,
    /// The prefix of each block's last key (searched before the blocks, so
    /// a lookup touches one block).
    fences: Vec<u64>,
    len: usize,
}

impl Run {
    fn new(blocks: Vec<Vec<Key>>, len: usize) -> Self {
        let fences = blocks
            .iter()
            .map(|b| b.last().map_or(u64::MAX, Key::prefix))
            .collect();
        Self {
            blocks,
            fences,
            len,
        }
    }

    fn from_sorted(keys: Vec<Key>) -> Self {
        let len = keys.len();
        let blocks = if len <= BLOCK {
            vec![keys]
        } else {
            keys.chunks(BLOCK).map(<[Key]>::to_vec).collect()
        };
        Self::new(blocks, len)
    }

    fn get(&self, i: usize) -> Option<&Key> {
        self.blocks.get(i / BLOCK)?.get(i % BLOCK)
    }

    /// The number of keys whose prefix is less than `prefix`.
    fn rank(&self, prefix: u64) -> usize {
        // Blocks whose last key is less lie wholly before it.
        let full = self.fences.partition_point(|&last| last < prefix);
        match self.blocks.get(full) {
            Some(b) => full * BLOCK + b.partition_point(|k| k.prefix() < prefix),
            None => self.len,
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Key> {
        self.blocks.iter().flatten()
    }
}

/// Merges two runs, freeing their blocks as it goes (a flattened block
/// iterator drops each block once it has been read).
fn merge(a: Run, b: Run) -> Run {
    let len = a.len + b.len;
    let (mut a, mut b) = (
        a.blocks.into_iter().flatten(),
        b.blocks.into_iter().flatten(),
    );
    let (mut x, mut y) = (a.next(), b.next());
    let mut blocks = Vec::with_capacity(len.div_ceil(BLOCK));
    let mut block = Vec::with_capacity(BLOCK.min(len));
    let mut done = 0;
    loop {
        let k = match (x, y) {
            (Some(p), Some(q)) if p <= q => {
                x = a.next();
                p
            }
            (_, Some(q)) => {
                y = b.next();
                q
            }
            (Some(p), None) => {
                x = a.next();
                p
            }
            (None, None) => break,
        };
        block.push(k);
        if block.len() == BLOCK {
            done += BLOCK;
            let next = Vec::with_capacity(BLOCK.min(len - done));
            blocks.push(std::mem::replace(&mut block, next));
        }
    }
    if !block.is_empty() {
        blocks.push(block);
    }
    Run::new(blocks, len)
}

/// Buckets of the filter per key, at least.
const FILTER_BUCKETS_PER_KEY: usize = 16;

/// One bit per bucket of ids (by their leading bits): set if some key of
/// the map is in it.
#[derive(Default)]
struct Filter {
    bits: Vec<u64>,
    /// log₂ of the bucket count (0 while empty).
    log2: u32,
}

impl Filter {
    fn bucket(&self, prefix: u64) -> Option<usize> {
        (self.log2 > 0).then(|| (prefix >> (64 - self.log2)) as usize)
    }

    fn insert(&mut self, prefix: u64) {
        if let Some(b) = self.bucket(prefix) {
            self.bits[b / 64] |= 1 << (b % 64);
        }
    }

    /// Whether no key has `prefix` (false when unsure).
    fn excludes(&self, prefix: u64) -> bool {
        self.bucket(prefix)
            .is_some_and(|b| self.bits[b / 64] & (1 << (b % 64)) == 0)
    }

    /// An empty filter sized for `keys` keys.
    fn for_keys(keys: usize) -> Self {
        let buckets = (keys * FILTER_BUCKETS_PER_KEY).next_power_of_two().max(64);
        Self {
            bits: vec![0; buckets / 64],
            log2: buckets.trailing_zeros(),
        }
    }

    fn buckets(&self) -> usize {
        self.bits.len() * 64
    }
}

/// Sorted runs of keys, and the packs their ordinals name.
#[derive(Default)]
pub(crate) struct ChunkMap {
    runs: Vec<Run>,
    /// Keys in all runs.
    keys: usize,
    filter: Filter,
    /// (first ordinal, pack number) of each pack added, by first ordinal.
    batches: Vec<(u32, u32)>,
    next_ordinal: u32,
    /// Packs removed since the map was built: their slots are skipped.
    removed: HashSet<u32>,
}

impl ChunkMap {
    /// Adds slots (in any order, of any packs).
    pub fn add(&mut self, mut slots: Vec<Slot>) -> Result<(), MapFull> {
        if slots.is_empty() {
            return Ok(());
        }
        slots.sort_unstable_by_key(|s| (s.pack_no, s.entry));
        let mut keys = Vec::with_capacity(slots.len());
        let mut batches = Vec::new();
        let mut next = self.next_ordinal;
        for group in slots.chunk_by(|a, b| a.pack_no == b.pack_no) {
            let last = group.last().expect("groups are not empty");
            let first = next;
            next = first
                .checked_add(last.entry)
                .and_then(|o| o.checked_add(1))
                .ok_or(MapFull)?;
            batches.push((first, last.pack_no));
            keys.extend(group.iter().map(|s| Key {
                ordinal: first + s.entry,
                ..Key::first_of(s.prefix)
            }));
        }
        drop(slots);
        // Nothing changed before this point, so a full map is left as it was.
        self.next_ordinal = next;
        self.batches.extend(batches);
        keys.sort_unstable();
        self.keys += keys.len();
        if self.filter.buckets() < self.keys * FILTER_BUCKETS_PER_KEY {
            // Doubled each time, so rebuilding it costs O(1) a key.
            self.filter = Filter::for_keys(self.keys);
            for k in self.runs.iter().flat_map(Run::iter) {
                self.filter.insert(k.prefix());
            }
        }
        for k in &keys {
            self.filter.insert(k.prefix());
        }
        self.runs.push(Run::from_sorted(keys));
        while self.runs.len() >= 2 {
            let n = self.runs.len();
            if self.runs[n - 1].len * 2 < self.runs[n - 2].len {
                break;
            }
            let b = self.runs.pop().expect("two runs");
            let a = self.runs.pop().expect("two runs");
            self.runs.push(merge(a, b));
        }
        Ok(())
    }

    /// The slot a key stands for.
    fn slot(&self, k: &Key) -> Slot {
        let at = self
            .batches
            .partition_point(|&(first, _)| first <= k.ordinal);
        let (first, pack_no) = self.batches[at - 1];
        Slot {
            prefix: k.prefix(),
            pack_no,
            entry: k.ordinal - first,
        }
    }

    /// The slots whose prefix is that of `id`, newest pack (then last
    /// entry) first.
    pub fn candidates(&self, id: &[u8; 32]) -> Vec<Slot> {
        let prefix = prefix_of(id);
        let mut out: Vec<Slot> = Vec::new();
        if self.filter.excludes(prefix) {
            return out;
        }
        for run in &self.runs {
            let mut i = run.rank(prefix);
            while let Some(k) = run.get(i).filter(|k| k.prefix() == prefix) {
                let slot = self.slot(k);
                if !self.removed.contains(&slot.pack_no) {
                    out.push(slot);
                }
                i += 1;
            }
        }
        out.sort_unstable_by(|a, b| b.cmp(a));
        out
    }

    /// Whether no slot has `id`'s prefix (then `id` is certainly absent).
    pub fn surely_absent(&self, id: &[u8; 32]) -> bool {
        let prefix = prefix_of(id);
        if self.filter.excludes(prefix) {
            return true;
        }
        self.runs
            .iter()
            .all(|run| !matches!(run.get(run.rank(prefix)), Some(k) if k.prefix() == prefix))
    }

    /// Every slot of a pack not removed, in no particular order.
    pub fn slots(&self) -> impl Iterator<Item = Slot> + '_ {
        self.runs
            .iter()
            .flat_map(Run::iter)
            .map(|k| self.slot(k))
            .filter(|s| !self.removed.contains(&s.pack_no))
    }

    /// Drops pack number `no`'s slots from every answer.
    pub fn remove_pack(&mut self, no: u32) {
        self.removed.insert(no);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> [u8; 32] {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
        id[8..16].copy_from_slice(&n.to_le_bytes());
        id
    }

    #[test]
    fn finds_every_added_slot_across_merged_runs() {
        let mut map = ChunkMap::default();
        let mut n = 0u64;
        for pack in 0..40u32 {
            let count = 1 + (pack as u64 * 37) % 300;
            let slots = (0..count)
                .map(|e| {
                    n += 1;
                    Slot {
                        prefix: prefix_of(&id(n)),
                        pack_no: pack,
                        entry: e as u32,
                    }
                })
                .collect();
            map.add(slots).unwrap();
        }
        assert!(map.runs.len() <= 12, "{} runs", map.runs.len());
        assert_eq!(map.slots().count() as u64, n);
        let mut k = 0u64;
        for pack in 0..40u32 {
            let count = 1 + (pack as u64 * 37) % 300;
            for e in 0..count {
                k += 1;
                let c = map.candidates(&id(k));
                assert_eq!(c.len(), 1, "id {k}");
                assert_eq!((c[0].pack_no, c[0].entry), (pack, e as u32), "id {k}");
                assert!(!map.surely_absent(&id(k)));
            }
        }
        assert!(map.surely_absent(&id(n + 1)));
        map.remove_pack(0);
        assert!(map.candidates(&id(1)).is_empty());
        assert_eq!(map.slots().count() as u64, n - 1);
        assert!(map.candidates(&id(n + 1)).is_empty());
        for run in &map.runs {
            let keys: Vec<&Key> = run.iter().collect();
            assert_eq!(keys.len(), run.len);
            assert!(keys.windows(2).all(|w| w[0] <= w[1]));
        }
    }

    #[test]
    fn candidates_come_newest_pack_first() {
        let mut map = ChunkMap::default();
        let p = prefix_of(&id(5));
        for (pack_no, entry) in [(3, 0), (9, 1), (9, 4), (1, 2)] {
            map.add(vec![Slot {
                prefix: p,
                pack_no,
                entry,
            }])
            .unwrap();
        }
        let got: Vec<(u32, u32)> = map
            .candidates(&id(5))
            .iter()
            .map(|s| (s.pack_no, s.entry))
            .collect();
        assert_eq!(got, vec![(9, 4), (9, 1), (3, 0), (1, 2)]);
    }

    /// Runs longer than a block: ranks, lookups and merges across block
    /// boundaries, with prefixes repeated so equal prefixes straddle them.
    #[test]
    fn runs_span_blocks() {
        let mut map = ChunkMap::default();
        let per_pack = BLOCK as u32 / 3 + 7;
        let prefix = |pack: u32, e: u32| u64::from((pack * per_pack + e) / 3) << 20;
        for pack in 0..8u32 {
            let slots = (0..per_pack)
                .map(|e| Slot {
                    prefix: prefix(pack, e),
                    pack_no: pack,
                    entry: e,
                })
                .collect();
            map.add(slots).unwrap();
        }
        assert!(map.runs.iter().any(|r| r.blocks.len() > 1));
        for pack in 0..8u32 {
            for e in (0..per_pack).step_by(97).chain([per_pack - 1]) {
                let p = prefix(pack, e);
                let mut want: Vec<Slot> = (0..8u32)
                    .flat_map(|q| (0..per_pack).map(move |f| (q, f)))
                    .filter(|&(q, f)| prefix(q, f) == p)
                    .map(|(q, f)| Slot {
                        prefix: p,
                        pack_no: q,
                        entry: f,
                    })
                    .collect();
                want.sort_unstable_by(|a, b| b.cmp(a));
                let mut probe = [0u8; 32];
                probe[..8].copy_from_slice(&p.to_be_bytes());
                assert_eq!(map.candidates(&probe), want, "pack {pack} entry {e}");
            }
        }
        let mut absent = [0u8; 32];
        absent[..8].copy_from_slice(&(prefix(7, per_pack - 1) + 1).to_be_bytes());
        assert!(map.surely_absent(&absent));
        assert_eq!(map.slots().count(), 8 * per_pack as usize);
    }

    #[test]
    fn ordinals_run_out_cleanly() {
        let mut map = ChunkMap::default();
        let slot = |pack_no, entry| Slot {
            prefix: 1,
            pack_no,
            entry,
        };
        map.add(vec![slot(0, u32::MAX - 1)]).unwrap();
        assert!(map.add(vec![slot(1, 0)]).is_err());
        assert_eq!(map.candidates(&[0; 32]), Vec::new());
    }
}
