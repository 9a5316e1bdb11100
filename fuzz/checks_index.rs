// Per-target checks for cairn-index.
//
// Shared, like checks_format.rs, by the cargo-fuzz targets (through
// fuzz/src/lib.rs) and by crates/cairn-index/tests/fuzz_corpus.rs.
//
// The index's record layout (`entries` values of 53-byte entry records,
// 12-byte pack records, pack number, pack id and snapshot keys) is a pure
// codec, `cairn_index::record`. Each target has two checks over the same
// input:
// - the codec check, which the fuzz target runs (no sled, so it is fast):
//   `check_index_roundtrip_codec` encodes the values of the input (a pack's
//   entries as an `entries` value, a pack record, keys), checks the bytes
//   against a reference encoder written from the layout, decodes them back
//   to the same values (`entry_count`, `entry_id`, `decode_entry`) and
//   encodes deterministically;
//   `check_index_records_codec` decodes arbitrary bytes as every record
//   kind (as an `entries` value: `entry_count`, `entry_id` and
//   `decode_entry` of every entry, past the end too) and checks the result
//   against a reference decoder written from the layout (accepted exactly
//   when it accepts, same values, re-encodes to the same bytes, a rejection
//   names the record kind);
// - the sled check, which the corpus replay test runs on every corpus file
//   as well (it opens sled, so it is far too slow to fuzz with):
//   `check_index_roundtrip` stores arbitrary `PackEntry` lists with
//   `add_pack` and checks that `lookup`, `contains`, `packs` and
//   `chunk_count` give back exactly what was stored (the last entry of an
//   id in a pack wins, and the newest pack holding an id wins over an older
//   one), that a second `add_pack` of a known pack changes nothing, and
//   that `remove_pack` forgets a pack again (its ids fall back to an older
//   pack holding them), and the same for a pack whose record is long
//   enough to live in an entry file; `check_index_records` writes raw key/value bytes
//   into a sled database laid out like an index (at `INDEX/sled`), opens it with
//   `Index::open` and checks `lookup`, `contains`, `chunk_count`, `packs`
//   and `snapshots` against a reference implementation over the raw trees:
//   a damaged record must give `IndexError::Damaged`, never a panic or a
//   wrong value.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cairn_format::pack::{BlobKind, PackEntry};
use cairn_format::{ChunkId, PackId, SnapshotId};
use cairn_index::record::{self, PackRecord};
use cairn_index::{ChunkLocation, Index, IndexError, IndexState, INDEX_VERSION};

/// Store id used by every index these checks open.
pub const STORE_ID: [u8; 16] = *b"cairn-fuzz-store";

/// Length of an entry record in an `entries` value, from the layout.
const ENTRY_LEN: usize = 53;

/// Reads fixed-width fields from the front of the fuzz input; missing
/// bytes read as zero.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let head = self.take(N);
        out[..head.len()].copy_from_slice(head);
        out
    }
    fn u8(&mut self) -> u8 {
        self.bytes::<1>()[0]
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Decodes the `index_roundtrip` input: pack id (32 bytes), pack length
/// (u64 LE), then entries of 22 bytes: id byte (the chunk id is 32 copies
/// of it, so ids repeat), kind byte (odd = meta), frame offset u64, frame
/// length, offset and length u32, all LE. The entries are read as the
/// iterator is advanced.
fn roundtrip_parts(data: &[u8]) -> (PackId, u64, impl Iterator<Item = PackEntry> + '_) {
    let mut input = Input(data);
    let pack = PackId(input.bytes());
    let pack_len = u64::from_le_bytes(input.bytes());
    let entries = std::iter::from_fn(move || {
        if input.is_empty() {
            return None;
        }
        Some(PackEntry {
            id: ChunkId([input.u8(); 32]),
            kind: if input.u8() & 1 == 1 {
                BlobKind::Meta
            } else {
                BlobKind::Data
            },
            frame_offset: u64::from_le_bytes(input.bytes()),
            frame_len: u32::from_le_bytes(input.bytes()),
            offset: u32::from_le_bytes(input.bytes()),
            len: u32::from_le_bytes(input.bytes()),
        })
    });
    (pack, pack_len, entries)
}

/// The `index_roundtrip` input with all its entries (see `roundtrip_parts`).
pub fn roundtrip_input(data: &[u8]) -> (PackId, u64, Vec<PackEntry>) {
    let (pack, pack_len, entries) = roundtrip_parts(data);
    (pack, pack_len, entries.collect())
}

/// The packs added to the index in `check_index_roundtrip`, oldest first.
type StoredPacks<'a> = [(PackId, u64, &'a [PackEntry])];

/// Checks that `index` holds exactly `stored` (and nothing else): every
/// id the roundtrip input can name (32 copies of one byte) is looked up;
/// it is found in the newest pack holding it, as that pack's last entry of
/// it.
fn check_stored(index: &Index, stored: &StoredPacks) {
    let mut expected: BTreeMap<ChunkId, ChunkLocation> = BTreeMap::new();
    for (pack, _, entries) in stored {
        for e in entries.iter() {
            let loc = ChunkLocation {
                pack: *pack,
                kind: e.kind,
                frame_offset: e.frame_offset,
                frame_len: e.frame_len,
                offset: e.offset,
                len: e.len,
            };
            expected.insert(e.id, loc);
        }
    }
    for b in 0..=255u8 {
        let id = ChunkId([b; 32]);
        let want = expected.get(&id).copied();
        assert_eq!(index.lookup(&id).expect("lookup"), want, "lookup {b}");
        assert_eq!(
            index.contains(&id).expect("contains"),
            want.is_some(),
            "contains {b}"
        );
    }
    assert_eq!(
        index.chunk_count().expect("chunk_count"),
        expected.len(),
        "chunk_count"
    );
    let mut packs: Vec<(PackId, u64)> = stored.iter().map(|(p, l, _)| (*p, *l)).collect();
    packs.sort();
    assert_eq!(index.packs().expect("packs"), packs, "packs");
}

/// Stores the pack of `data` in `index` (which must hold no pack), checks
/// every read gives exactly what was stored, adds it again (no change),
/// adds a second pack holding the first half of its entries with other
/// locations (newest pack wins), removes that one (the ids fall back to
/// the first pack) and then the first, and checks the index is empty
/// again.
pub fn check_index_roundtrip(index: &Index, data: &[u8]) {
    let (pack, pack_len, entries) = roundtrip_input(data);
    check_stored(index, &[]);
    index.add_pack(pack, pack_len, &entries).expect("add_pack");
    let first = (pack, pack_len, &entries[..]);
    check_stored(index, &[first]);
    // Adding a known pack again changes nothing.
    let mut other = entries[entries.len() / 2..].to_vec();
    for e in &mut other {
        e.frame_offset ^= 1;
    }
    index
        .add_pack(pack, pack_len ^ 1, &other)
        .expect("add_pack again");
    check_stored(index, &[first]);
    // A newer pack holding some of the same ids.
    let mut newer_id = pack;
    newer_id.0[31] ^= 0xFF;
    let mut newer = entries[..entries.len().div_ceil(2)].to_vec();
    for e in &mut newer {
        e.frame_offset ^= 2;
        e.len ^= 1;
    }
    let newer_len = pack_len.wrapping_add(1);
    index
        .add_pack(newer_id, newer_len, &newer)
        .expect("add_pack newer");
    check_stored(index, &[first, (newer_id, newer_len, &newer)]);
    index.remove_pack(newer_id).expect("remove_pack newer");
    check_stored(index, &[first]);
    index.remove_pack(pack).expect("remove_pack");
    check_stored(index, &[]);
    // Removing them again is a no-op.
    index.remove_pack(pack).expect("remove_pack again");
    index
        .remove_pack(newer_id)
        .expect("remove_pack newer again");
    check_stored(index, &[]);
    // The entries repeated past 64 KiB of record, so the record lives in
    // an entry file: the same reads, and a removal whose flush deletes it.
    if !entries.is_empty() {
        let big: Vec<PackEntry> = entries
            .iter()
            .copied()
            .cycle()
            .take(entries.len().max(1300))
            .collect();
        let mut big_id = pack;
        big_id.0[0] ^= 0xFF;
        index
            .add_pack(big_id, pack_len, &big)
            .expect("add_pack big");
        index.flush().expect("flush");
        check_stored(index, &[(big_id, pack_len, &big)]);
        index.remove_pack(big_id).expect("remove_pack big");
        index.flush().expect("flush");
        check_stored(index, &[]);
    }
}

/// The raw trees of an `index_records` input.
#[derive(Default)]
struct RawTrees {
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
    packs: BTreeMap<Vec<u8>, Vec<u8>>,
    packno: BTreeMap<Vec<u8>, Vec<u8>>,
    snapshots: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// Reads the `index_records` input: a flags byte (bit 0: leave out the
/// `complete` marker; bit 1: foreign store id; bit 2: wrong index
/// version), then records: tree selector (low 2 bits: entries, packs,
/// packno, snapshots), key length, key, value length, value. Gives the
/// flags and the records (tree number, key, value) in input order.
fn raw_records(data: &[u8]) -> (u8, impl Iterator<Item = (u8, &[u8], &[u8])>) {
    let mut input = Input(data);
    let flags = input.u8();
    let records = std::iter::from_fn(move || {
        if input.is_empty() {
            return None;
        }
        let tree = input.u8() & 3;
        let klen = input.u8() as usize;
        let key = input.take(klen);
        let vlen = input.u8() as usize;
        let value = input.take(vlen);
        Some((tree, key, value))
    });
    (flags, records)
}

/// The `index_records` input as the trees it fills (the last record of a
/// key wins).
fn records_input(data: &[u8]) -> (u8, RawTrees) {
    let (flags, records) = raw_records(data);
    let mut trees = RawTrees::default();
    for (tree, key, value) in records {
        let tree = match tree {
            0 => &mut trees.entries,
            1 => &mut trees.packs,
            2 => &mut trees.packno,
            _ => &mut trees.snapshots,
        };
        tree.insert(key.to_vec(), value.to_vec());
    }
    (flags, trees)
}

/// Reference: whether `v` is whole entry records (its length a multiple
/// of 53).
fn whole_entries(v: &[u8]) -> bool {
    v.chunks_exact(ENTRY_LEN).remainder().is_empty()
}

/// An entry record of the `entries` tree: pack number (its key), position
/// in the pack's value, the 53 bytes.
type RawEntry<'a> = (u32, usize, &'a [u8]);

/// Reference: every entry record of the `entries` tree, or `Err(())`
/// (damaged) if a key is not a 4-byte pack number or a value is not whole
/// entry records.
fn ref_all_entries(trees: &RawTrees) -> Result<Vec<RawEntry<'_>>, ()> {
    let mut out = Vec::new();
    for (k, v) in &trees.entries {
        if k.len() != 4 || !whole_entries(v) {
            return Err(());
        }
        let no = be(k) as u32;
        out.extend(v.chunks(ENTRY_LEN).enumerate().map(|(i, rec)| (no, i, rec)));
    }
    Ok(out)
}

/// Reference: whether the `entries` record of pack number `no` belongs to
/// an indexed pack: its `packno` record names a pack whose `packs` record
/// (12 bytes) carries the same number. Any other is left over and ignored.
fn ref_named(trees: &RawTrees, no: u32) -> bool {
    let key: [u8; 4] = ref_be_key(no.into());
    let Some(pack) = trees.packno.get(&key[..]) else {
        return false;
    };
    trees
        .packs
        .get(pack)
        .is_some_and(|v| v.len() == 12 && le(&v[0..4]) as u32 == no)
}

/// What `lookup` must return for `id` on the raw trees (`Err(())` =
/// damaged): among the entries of indexed packs (`ref_named`), the entry
/// of `id` of the greatest pack number (the newest pack), the last in that
/// pack, located in the pack its `packno` record names.
fn expected_lookup(trees: &RawTrees, id: &[u8; 32]) -> Result<Option<ChunkLocation>, ()> {
    let all = ref_all_entries(trees)?;
    let Some(&(no, _, rec)) = all
        .iter()
        .filter(|(no, _, rec)| rec[..32] == id[..] && ref_named(trees, *no))
        .max_by_key(|&&(no, i, _)| (no, i))
    else {
        return Ok(None);
    };
    let key: [u8; 4] = ref_be_key(no.into());
    let pack = trees.packno.get(&key[..]).ok_or(())?;
    let pack = PackId(pack.as_slice().try_into().map_err(|_| ())?);
    let e = ref_entry(rec).ok_or(())?;
    Ok(Some(ChunkLocation {
        pack,
        kind: e.kind,
        frame_offset: e.frame_offset,
        frame_len: e.frame_len,
        offset: e.offset,
        len: e.len,
    }))
}

/// What `contains` must return for `id` on the raw trees.
fn expected_contains(trees: &RawTrees, id: &[u8; 32]) -> Result<bool, ()> {
    Ok(ref_all_entries(trees)?
        .iter()
        .any(|(no, _, rec)| rec[..32] == id[..] && ref_named(trees, *no)))
}

/// What `chunk_count` must return on the raw trees: the number of distinct
/// first 8 bytes of the ids of all entries.
fn expected_chunk_count(trees: &RawTrees) -> Result<usize, ()> {
    Ok(ref_all_entries(trees)?
        .iter()
        .map(|(_, _, rec)| &rec[..8])
        .collect::<BTreeSet<_>>()
        .len())
}

fn damaged_or<T>(r: Result<T, IndexError>) -> Result<T, ()> {
    r.map_err(|e| {
        assert!(matches!(e, IndexError::Damaged { .. }), "{e}");
        let _ = e.to_string();
    })
}

/// Opens the index at `path`, waiting while a sled handle dropped just
/// before still holds the folder's lock (sled's I/O threads release it a
/// moment after the last handle goes).
fn open_when_unlocked(path: &Path) -> (Index, IndexState) {
    for _ in 0..2000 {
        match Index::open(path, STORE_ID) {
            Err(e @ IndexError::Sled { .. })
                if e.to_string().contains("could not acquire lock") =>
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            other => return other.expect("Index::open"),
        }
    }
    panic!("{} stayed locked for 2 s", path.display());
}

/// A fresh folder under `scratch` for each input (a late sled thread of the
/// previous input must not write into the next one's database); the
/// previous input's folder is removed.
fn fresh_index_path(scratch: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    if n > 0 {
        let _ = std::fs::remove_dir_all(scratch.join(format!("index-{}", n - 1)));
    }
    let path = scratch.join(format!("index-{n}"));
    let _ = std::fs::remove_dir_all(&path);
    path
}

/// Writes the raw records of `data` into a sled database under `scratch`,
/// opens it as an index and checks every read against the reference
/// implementation over the raw trees.
pub fn check_index_records(scratch: &Path, data: &[u8]) {
    let (flags, trees) = records_input(data);
    let path = fresh_index_path(scratch);
    {
        let db = sled::Config::new()
            .path(path.join("sled"))
            .flush_every_ms(None)
            .mode(sled::Mode::LowSpace)
            .open()
            .expect("sled open");
        let meta = db.open_tree("meta").unwrap();
        let version = INDEX_VERSION + u32::from(flags >> 2 & 1);
        meta.insert("version", &version.to_le_bytes()).unwrap();
        let mut store = STORE_ID;
        store[0] ^= flags >> 1 & 1;
        meta.insert("store_id", &store).unwrap();
        if flags & 1 == 0 {
            meta.insert("complete", &[1u8]).unwrap();
        }
        for (name, tree) in [
            ("entries", &trees.entries),
            ("packs", &trees.packs),
            ("packno", &trees.packno),
            ("snapshots", &trees.snapshots),
        ] {
            let t = db.open_tree(name).unwrap();
            for (k, v) in tree {
                t.insert(k.as_slice(), v.as_slice()).unwrap();
            }
        }
        db.flush().unwrap();
    }
    {
        let (index, state) = open_when_unlocked(&path);
        // Every id of a stored value of whole entry records (whatever its
        // key), the same id with its last byte changed (same first 8
        // bytes, so the index must tell them apart by the full id), and
        // one id never stored. Probed whether or not the index was
        // cleared on open.
        let mut ids: BTreeSet<[u8; 32]> = BTreeSet::new();
        for v in trees.entries.values() {
            if whole_entries(v) {
                for rec in v.chunks(ENTRY_LEN) {
                    let mut id: [u8; 32] = rec[..32].try_into().unwrap();
                    ids.insert(id);
                    id[31] ^= 1;
                    ids.insert(id);
                }
            }
        }
        ids.insert([0xA5; 32]);
        let ready = flags & 7 == 0;
        let empty = RawTrees::default();
        let trees = if ready {
            assert_eq!(state, IndexState::Ready);
            &trees
        } else {
            assert_eq!(state, IndexState::NeedsRebuild);
            &empty
        };
        for id in &ids {
            let got = damaged_or(index.lookup(&ChunkId(*id)));
            assert_eq!(got, expected_lookup(trees, id), "lookup");
            let got = damaged_or(index.contains(&ChunkId(*id)));
            assert_eq!(got, expected_contains(trees, id), "contains");
        }
        assert_eq!(
            damaged_or(index.chunk_count()),
            expected_chunk_count(trees),
            "chunk_count"
        );
        let expected_packs: Result<Vec<(PackId, u64)>, ()> = trees
            .packs
            .iter()
            .map(|(k, v)| {
                let id = PackId(k.as_slice().try_into().map_err(|_| ())?);
                if v.len() != 12 {
                    return Err(());
                }
                Ok((id, u64::from_le_bytes(v[4..12].try_into().unwrap())))
            })
            .collect();
        assert_eq!(damaged_or(index.packs()), expected_packs, "packs");
        let expected_snapshots: Result<Vec<(SnapshotId, Vec<u8>)>, ()> = trees
            .snapshots
            .iter()
            .map(|(k, v)| {
                let secs = i64::from_be_bytes(k.as_slice().try_into().map_err(|_| ())?);
                Ok((SnapshotId(secs), v.clone()))
            })
            .collect();
        assert_eq!(
            damaged_or(index.snapshots()),
            expected_snapshots,
            "snapshots"
        );
    }
}

// ---------------------------------------------------------------------
// The record codec (`cairn_index::record`), checked without sled.

/// Reference: the little-endian unsigned integer of `b` (at most 8 bytes).
fn le(b: &[u8]) -> u64 {
    b.iter().rev().fold(0, |acc, &x| acc << 8 | u64::from(x))
}

/// Reference: the big-endian unsigned integer of `b` (at most 8 bytes).
fn be(b: &[u8]) -> u64 {
    b.iter().fold(0, |acc, &x| acc << 8 | u64::from(x))
}

/// Reference: writes `v` little-endian into all of `out`.
fn put_le(out: &mut [u8], v: u64) {
    for (i, b) in out.iter_mut().enumerate() {
        *b = (v >> (8 * i)) as u8;
    }
}

/// Reference: writes `v` big-endian into all of `out`.
fn put_be(out: &mut [u8], v: u64) {
    let n = out.len();
    for (i, b) in out.iter_mut().enumerate() {
        *b = (v >> (8 * (n - 1 - i))) as u8;
    }
}

/// Reference decoder of one entry record, from the layout: chunk id (32
/// bytes), kind byte (0 data, 1 meta), frame offset u64, frame length,
/// offset, length u32; LE; 53 bytes exactly.
fn ref_entry(b: &[u8]) -> Option<PackEntry> {
    if b.len() != ENTRY_LEN {
        return None;
    }
    let kind = match b[32] {
        0 => BlobKind::Data,
        1 => BlobKind::Meta,
        _ => return None,
    };
    let mut id = [0u8; 32];
    id.copy_from_slice(&b[..32]);
    Some(PackEntry {
        id: ChunkId(id),
        kind,
        frame_offset: le(&b[33..41]),
        frame_len: le(&b[41..45]) as u32,
        offset: le(&b[45..49]) as u32,
        len: le(&b[49..53]) as u32,
    })
}

/// Reference encoder of an `entries` value: the entry records one after
/// the other.
fn ref_encode_entries(entries: &[PackEntry]) -> Vec<u8> {
    let mut out = vec![0u8; entries.len() * ENTRY_LEN];
    for (e, r) in entries.iter().zip(out.chunks_mut(ENTRY_LEN)) {
        r[..32].copy_from_slice(&e.id.0);
        r[32] = match e.kind {
            BlobKind::Data => 0,
            BlobKind::Meta => 1,
        };
        put_le(&mut r[33..41], e.frame_offset);
        put_le(&mut r[41..45], e.frame_len.into());
        put_le(&mut r[45..49], e.offset.into());
        put_le(&mut r[49..53], e.len.into());
    }
    out
}

/// Reference decoder of a pack record: pack number u32, pack length u64,
/// LE, 12 bytes exactly.
fn ref_pack(b: &[u8]) -> Option<PackRecord> {
    (b.len() == 12).then(|| PackRecord {
        pack_no: le(&b[0..4]) as u32,
        pack_len: le(&b[4..12]),
    })
}

/// Reference encoder of a pack record.
fn ref_encode_pack(r: &PackRecord) -> [u8; 12] {
    let mut out = [0u8; 12];
    put_le(&mut out[0..4], r.pack_no.into());
    put_le(&mut out[4..12], r.pack_len);
    out
}

/// Reference encoder of a big-endian key of `N` bytes.
fn ref_be_key<const N: usize>(v: u64) -> [u8; N] {
    let mut out = [0u8; N];
    put_be(&mut out, v);
    out
}

/// The codec checks look at this many records (or entries) of an input at
/// most: every one runs the same code on other values, and without a bound
/// libFuzzer favours ever longer inputs for the new loop counts they reach
/// (up to 64 KiB, thousands of records) and slows to a crawl. The sled
/// checks still read the whole input.
pub const CODEC_MAX_RECORDS: usize = 32;

/// Checks `b` as an `entries` value against the reference: its entry
/// count, and `entry_id` and `decode_entry` of its first
/// `CODEC_MAX_RECORDS` entries, of the (partial) entry after the whole
/// ones, of the one after that, and of positions whose byte offset
/// overflows; where every entry looked at decodes, they encode back to
/// their bytes.
fn check_entries_bytes(b: &[u8]) {
    assert_eq!(record::ENTRY_LEN, ENTRY_LEN, "entry length");
    let whole = b.len() / ENTRY_LEN;
    let count = if whole_entries(b) {
        Ok(whole)
    } else {
        Err("pack entries")
    };
    assert_eq!(record::entry_count(b), count, "entry count");
    let shown = whole.min(CODEC_MAX_RECORDS);
    let far = [
        usize::MAX / ENTRY_LEN,
        usize::MAX / ENTRY_LEN + 1,
        usize::MAX,
    ];
    let mut decoded = Vec::new();
    for i in (0..shown).chain([whole, whole + 1]).chain(far) {
        // Entry i spans bytes 53·i .. 53·(i + 1), its id the first 32 of
        // them (computed wide, so that no position wraps around).
        let at = i as u128 * ENTRY_LEN as u128;
        let id_end = at + 32;
        let end = at + ENTRY_LEN as u128;
        let len = b.len() as u128;
        let id = (id_end <= len).then(|| {
            let mut id = [0u8; 32];
            id.copy_from_slice(&b[at as usize..id_end as usize]);
            ChunkId(id)
        });
        assert_eq!(record::entry_id(b, i), id, "entry id {i}");
        let entry = if end <= len {
            ref_entry(&b[at as usize..end as usize])
        } else {
            None
        };
        assert_eq!(
            record::decode_entry(b, i),
            entry.ok_or("pack entries"),
            "entry {i}"
        );
        if i < shown {
            decoded.push(entry);
        }
    }
    if let Some(entries) = decoded.into_iter().collect::<Option<Vec<_>>>() {
        let bytes = record::encode_entries(&entries);
        assert_eq!(bytes, ref_encode_entries(&entries), "entries layout");
        assert_eq!(bytes, b[..shown * ENTRY_LEN], "entries bytes");
    }
}

/// Decodes `b` as every record kind and checks each result against the
/// reference decoder; what decodes must encode back to `b`.
pub fn check_record_bytes(b: &[u8]) {
    check_entries_bytes(b);
    match ref_pack(b) {
        Some(r) => {
            assert_eq!(record::decode_pack(b), Ok(r), "pack record");
            assert_eq!(record::encode_pack(&r)[..], *b, "pack record bytes");
        }
        None => assert_eq!(record::decode_pack(b), Err("pack"), "pack record"),
    }
    if b.len() == 4 {
        let no = be(b) as u32;
        assert_eq!(record::decode_pack_no(b), Ok(no), "pack number key");
        assert_eq!(record::encode_pack_no(no)[..], *b, "pack number key bytes");
    } else {
        assert_eq!(record::decode_pack_no(b), Err("pack number"));
    }
    if b.len() == 32 {
        let mut id = [0u8; 32];
        id.copy_from_slice(b);
        assert_eq!(record::decode_pack_id(b), Ok(PackId(id)), "pack id");
    } else {
        assert_eq!(record::decode_pack_id(b), Err("pack"), "pack id");
    }
    if b.len() == 8 {
        let id = SnapshotId(be(b) as i64);
        assert_eq!(record::decode_snapshot_key(b), Ok(id), "snapshot key");
        assert_eq!(
            record::encode_snapshot_key(id)[..],
            *b,
            "snapshot key bytes"
        );
    } else {
        assert_eq!(record::decode_snapshot_key(b), Err("snapshot"));
    }
}

/// The `index_records` codec check: the whole input (as given, and cut to
/// the length of each record kind and of two entry records, so that the
/// accepting paths are reached at once) and the key and value of each of
/// its first `CODEC_MAX_RECORDS` records (see `raw_records`) are decoded as
/// every record kind by `check_record_bytes`.
pub fn check_index_records_codec(data: &[u8]) {
    check_record_bytes(data);
    for n in [4, 8, 12, 32, 53, 106] {
        if data.len() > n {
            check_record_bytes(&data[..n]);
        }
    }
    let (_, records) = raw_records(data);
    for (_, key, value) in records.take(CODEC_MAX_RECORDS) {
        check_record_bytes(key);
        check_record_bytes(value);
    }
}

/// The `index_roundtrip` codec check, on the input of `roundtrip_input`:
/// the pack number is the first 4 bytes of the pack id (LE); the first
/// `CODEC_MAX_RECORDS` entries are the pack's `entries` value; snapshot
/// ids are the pack length and every entry's frame offset, as i64. Each
/// value is encoded twice (same bytes), the bytes equal the reference
/// encoding, and they decode back to the value.
pub fn check_index_roundtrip_codec(data: &[u8]) {
    let (pack, pack_len, entries) = roundtrip_parts(data);
    let pack_no = le(&pack.0[0..4]) as u32;

    let rec = PackRecord { pack_no, pack_len };
    let bytes = record::encode_pack(&rec);
    assert_eq!(
        bytes,
        record::encode_pack(&rec),
        "pack record deterministic"
    );
    assert_eq!(bytes, ref_encode_pack(&rec), "pack record layout");
    assert_eq!(record::decode_pack(&bytes), Ok(rec), "pack record");

    let key = record::encode_pack_no(pack_no);
    assert_eq!(key, ref_be_key(pack_no.into()), "pack number key");
    assert_eq!(record::decode_pack_no(&key), Ok(pack_no), "pack number key");
    assert_eq!(record::decode_pack_id(&pack.0), Ok(pack), "pack id");

    let entries: Vec<PackEntry> = entries.take(CODEC_MAX_RECORDS).collect();
    let bytes = record::encode_entries(&entries);
    assert_eq!(
        bytes,
        record::encode_entries(&entries),
        "entries deterministic"
    );
    assert_eq!(bytes, ref_encode_entries(&entries), "entries layout");
    assert_eq!(
        record::entry_count(&bytes),
        Ok(entries.len()),
        "entry count"
    );
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(record::decode_entry(&bytes, i), Ok(*e), "entry {i}");
        assert_eq!(record::entry_id(&bytes, i), Some(e.id), "entry id {i}");
    }
    let n = entries.len();
    assert_eq!(record::decode_entry(&bytes, n), Err("pack entries"));
    assert_eq!(record::entry_id(&bytes, n), None, "entry id past the end");

    let mut snapshots = vec![SnapshotId(pack_len as i64)];
    snapshots.extend(entries.iter().map(|e| SnapshotId(e.frame_offset as i64)));
    for id in &snapshots {
        let key = record::encode_snapshot_key(*id);
        assert_eq!(
            key,
            record::encode_snapshot_key(*id),
            "snapshot key deterministic"
        );
        assert_eq!(key, ref_be_key(id.0 as u64), "snapshot key layout");
        assert_eq!(record::decode_snapshot_key(&key), Ok(*id), "snapshot key");
    }
    // sled lists snapshots in key order: for ids from 1970 on, that is
    // time order.
    for pair in snapshots.windows(2) {
        if pair[0].0 >= 0 && pair[1].0 >= 0 {
            assert_eq!(
                record::encode_snapshot_key(pair[0]).cmp(&record::encode_snapshot_key(pair[1])),
                pair[0].cmp(&pair[1]),
                "snapshot key order"
            );
        }
    }
}
