//! The in-memory map from chunk id to (pack number, entry number).
//!
//! sled holds one record per pack (its trailer entries, see [`record`]),
//! not one per chunk: measured here, sled 0.34 took about 17 µs and a
//! few hundred bytes of memory per inserted 32-byte key, which for the
//! 4 KiB chunks of a DuckDB file was more than the rest of a snapshot
//! together. This map answers "where might this id be" from memory in
//! 16 bytes per chunk: the first 8 bytes of the id, the pack number and
//! the entry's position in that pack's record. A prefix match is only a
//! candidate; [`Index`](crate::Index) confirms it against the full id in
//! the pack's record before it says yes, so a prefix collision can cost a
//! read, never a wrong answer.
//!
//! The map is a few sorted runs, merged like a binary counter (a run is
//! merged into the one before it once it is at least half its length), so
//! adding a pack costs O(entries · log) amortised and a lookup is a binary
//! search per run (at most about log₂ of the pack count runs).
//!
//! [`record`]: crate::record

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

/// Sorted runs of slots.
#[derive(Default)]
pub(crate) struct ChunkMap {
    runs: Vec<Vec<Slot>>,
    /// Packs removed since the map was built: their slots are skipped.
    removed: std::collections::HashSet<u32>,
}

impl ChunkMap {
    /// Adds slots (in any order).
    pub fn add(&mut self, mut slots: Vec<Slot>) {
        if slots.is_empty() {
            return;
        }
        slots.sort_unstable();
        self.runs.push(slots);
        while self.runs.len() >= 2 {
            let n = self.runs.len();
            if self.runs[n - 1].len() * 2 < self.runs[n - 2].len() {
                break;
            }
            let b = self.runs.pop().expect("two runs");
            let a = self.runs.pop().expect("two runs");
            self.runs.push(merge(a, b));
        }
    }

    /// The slots whose prefix is that of `id`, newest pack (then last
    /// entry) first.
    pub fn candidates(&self, id: &[u8; 32]) -> Vec<Slot> {
        let prefix = prefix_of(id);
        let mut out: Vec<Slot> = Vec::new();
        for run in &self.runs {
            let start = run.partition_point(|s| s.prefix < prefix);
            out.extend(
                run[start..]
                    .iter()
                    .take_while(|s| s.prefix == prefix)
                    .filter(|s| !self.removed.contains(&s.pack_no)),
            );
        }
        out.sort_unstable_by(|a, b| b.cmp(a));
        out
    }

    /// Whether no slot has `id`'s prefix (then `id` is certainly absent).
    pub fn surely_absent(&self, id: &[u8; 32]) -> bool {
        let prefix = prefix_of(id);
        self.runs.iter().all(|run| {
            let at = run.partition_point(|s| s.prefix < prefix);
            !matches!(run.get(at), Some(s) if s.prefix == prefix)
        })
    }

    /// Every slot of a pack not removed, in no particular order.
    pub fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.runs
            .iter()
            .flatten()
            .filter(|s| !self.removed.contains(&s.pack_no))
    }

    /// Drops pack number `no`'s slots from every answer.
    pub fn remove_pack(&mut self, no: u32) {
        self.removed.insert(no);
    }
}

fn merge(a: Vec<Slot>, b: Vec<Slot>) -> Vec<Slot> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] <= b[j] {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
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
            map.add(slots);
        }
        assert!(map.runs.len() <= 12, "{} runs", map.runs.len());
        assert_eq!(map.slots().count() as u64, n);
        for k in 1..=n {
            let c = map.candidates(&id(k));
            assert_eq!(c.len(), 1, "id {k}");
            assert!(!map.surely_absent(&id(k)));
        }
        assert!(map.surely_absent(&id(n + 1)));
        map.remove_pack(0);
        assert!(map.candidates(&id(1)).is_empty());
        assert_eq!(map.slots().count() as u64, n - 1);
        assert!(map.candidates(&id(n + 1)).is_empty());
        for run in &map.runs {
            assert!(run.windows(2).all(|w| w[0] <= w[1]));
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
            }]);
        }
        let got: Vec<(u32, u32)> = map
            .candidates(&id(5))
            .iter()
            .map(|s| (s.pack_no, s.entry))
            .collect();
        assert_eq!(got, vec![(9, 4), (9, 1), (3, 0), (1, 2)]);
    }
}
