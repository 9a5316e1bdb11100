// Per-target checks for cairn-index.
//
// Shared, like checks_format.rs, by the cargo-fuzz targets (through
// fuzz/src/lib.rs) and by crates/cairn-index/tests/fuzz_corpus.rs.
//
// The index's record layout (25-byte chunk location records, 12-byte pack
// records, pack number, id and snapshot keys) is a pure codec,
// `cairn_index::record`. Each target has two checks over the same input:
// - the codec check, which the fuzz target runs (no sled, so it is fast):
//   `check_index_roundtrip_codec` encodes the values of the input, checks
//   the bytes against a reference encoder written from the layout, decodes
//   them back to the same values and encodes deterministically;
//   `check_index_records_codec` decodes arbitrary bytes as every record
//   kind and checks the result against a reference decoder written from the
//   layout (accepted exactly when it accepts, same values, re-encodes to
//   the same bytes, a rejection names the record kind);
// - the sled check, which the corpus replay test runs on every corpus file
//   as well (it opens sled, so it is far too slow to fuzz with):
//   `check_index_roundtrip` stores arbitrary `PackEntry` lists with
//   `add_pack` and checks that `lookup`, `contains`, `packs` and
//   `chunk_count` give back exactly what was stored, and that `remove_pack`
//   forgets it all again; `check_index_records` writes raw key/value bytes
//   into a sled database laid out like an index, opens it with
//   `Index::open` and checks every decoding method against the reference
//   decoder: a damaged record must give `IndexError::Damaged`, never a
//   panic or a wrong value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cairn_format::pack::{BlobKind, PackEntry};
use cairn_format::{ChunkId, PackId, SnapshotId};
use cairn_index::record::{self, LocationRecord, PackRecord};
use cairn_index::{ChunkLocation, Index, IndexError, IndexState, INDEX_VERSION};

/// Store id used by every index these checks open.
pub const STORE_ID: [u8; 16] = *b"cairn-fuzz-store";

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

/// Stores the pack of `data` in `index` (which must hold no pack), checks
/// every read gives exactly what was stored, removes it, and checks the
/// index is empty again.
pub fn check_index_roundtrip(index: &Index, data: &[u8]) {
    let (pack, pack_len, entries) = roundtrip_input(data);
    assert_eq!(index.packs().expect("packs"), vec![], "index not empty");
    assert_eq!(index.chunk_count(), 0, "index not empty");
    index.add_pack(pack, pack_len, &entries).expect("add_pack");
    // The last entry of an id wins.
    let mut expected: BTreeMap<ChunkId, &PackEntry> = BTreeMap::new();
    for e in &entries {
        expected.insert(e.id, e);
    }
    let check_stored = || {
        for (id, e) in &expected {
            let loc = index.lookup(id).expect("lookup").expect("stored chunk");
            assert_eq!(
                loc,
                ChunkLocation {
                    pack,
                    kind: e.kind,
                    frame_offset: e.frame_offset,
                    frame_len: e.frame_len,
                    offset: e.offset,
                    len: e.len,
                }
            );
            assert!(index.contains(id).expect("contains"));
        }
        assert_eq!(index.chunk_count(), expected.len());
        assert_eq!(index.packs().expect("packs"), vec![(pack, pack_len)]);
    };
    check_stored();
    // Adding a known pack again changes nothing.
    let half = &entries[entries.len() / 2..];
    let mut other = half.to_vec();
    for e in &mut other {
        e.frame_offset ^= 1;
    }
    index
        .add_pack(pack, pack_len ^ 1, &other)
        .expect("add_pack again");
    check_stored();
    index.remove_pack(pack, &entries).expect("remove_pack");
    for id in expected.keys() {
        assert_eq!(index.lookup(id).expect("lookup"), None, "chunk survived");
        assert!(!index.contains(id).expect("contains"));
    }
    assert_eq!(index.chunk_count(), 0);
    assert_eq!(index.packs().expect("packs"), vec![]);
    // Removing it again is a no-op.
    index
        .remove_pack(pack, &entries)
        .expect("remove_pack again");
}

/// The raw trees of an `index_records` input.
#[derive(Default)]
struct RawTrees {
    chunks: BTreeMap<Vec<u8>, Vec<u8>>,
    packs: BTreeMap<Vec<u8>, Vec<u8>>,
    packno: BTreeMap<Vec<u8>, Vec<u8>>,
    snapshots: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// Reads the `index_records` input: a flags byte (bit 0: leave out the
/// `complete` marker; bit 1: foreign store id; bit 2: wrong index
/// version), then records: tree selector (low 2 bits: chunks, packs,
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
            0 => &mut trees.chunks,
            1 => &mut trees.packs,
            2 => &mut trees.packno,
            _ => &mut trees.snapshots,
        };
        tree.insert(key.to_vec(), value.to_vec());
    }
    (flags, trees)
}

/// What `lookup` must return for a raw chunks record (`Err(())` = damaged).
fn expected_lookup(trees: &RawTrees, id: &[u8]) -> Result<Option<ChunkLocation>, ()> {
    let Some(v) = trees.chunks.get(id) else {
        return Ok(None);
    };
    if v.len() != 25 {
        return Err(());
    }
    let no = u32::from_le_bytes(v[0..4].try_into().unwrap());
    let pack = trees.packno.get(&no.to_be_bytes()[..]).ok_or(())?;
    let pack = PackId(pack.as_slice().try_into().map_err(|_| ())?);
    let kind = match v[4] {
        0 => BlobKind::Data,
        1 => BlobKind::Meta,
        _ => return Err(()),
    };
    let u32_at = |o: usize| u32::from_le_bytes(v[o..o + 4].try_into().unwrap());
    Ok(Some(ChunkLocation {
        pack,
        kind,
        frame_offset: u64::from_le_bytes(v[5..13].try_into().unwrap()),
        frame_len: u32_at(13),
        offset: u32_at(17),
        len: u32_at(21),
    }))
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
/// decoder.
pub fn check_index_records(scratch: &Path, data: &[u8]) {
    let (flags, trees) = records_input(data);
    let path = fresh_index_path(scratch);
    {
        let db = sled::Config::new()
            .path(&path)
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
            ("chunks", &trees.chunks),
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
        let ready = flags & 7 == 0;
        let empty = RawTrees::default();
        let trees = if ready {
            assert_eq!(state, IndexState::Ready);
            &trees
        } else {
            assert_eq!(state, IndexState::NeedsRebuild);
            &empty
        };
        // Every stored key of chunk-id size, and one id never stored.
        let mut ids: Vec<[u8; 32]> = trees
            .chunks
            .keys()
            .filter_map(|k| k.as_slice().try_into().ok())
            .collect();
        ids.push([0xA5; 32]);
        for id in ids {
            let got = damaged_or(index.lookup(&ChunkId(id)));
            assert_eq!(got, expected_lookup(trees, &id), "lookup");
            let contains = index.contains(&ChunkId(id)).expect("contains");
            assert_eq!(contains, trees.chunks.contains_key(&id[..]));
        }
        assert_eq!(index.chunk_count(), trees.chunks.len());
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

/// Reference decoder of a location record, from the layout: pack number
/// u32, kind byte (0 data, 1 meta), frame offset u64, frame length,
/// offset, length u32; LE; 25 bytes exactly.
fn ref_location(b: &[u8]) -> Option<LocationRecord> {
    if b.len() != 25 {
        return None;
    }
    let kind = match b[4] {
        0 => BlobKind::Data,
        1 => BlobKind::Meta,
        _ => return None,
    };
    Some(LocationRecord {
        pack_no: le(&b[0..4]) as u32,
        kind,
        frame_offset: le(&b[5..13]),
        frame_len: le(&b[13..17]) as u32,
        offset: le(&b[17..21]) as u32,
        len: le(&b[21..25]) as u32,
    })
}

/// Reference encoder of a location record.
fn ref_encode_location(r: &LocationRecord) -> [u8; 25] {
    let mut out = [0u8; 25];
    put_le(&mut out[0..4], r.pack_no.into());
    out[4] = match r.kind {
        BlobKind::Data => 0,
        BlobKind::Meta => 1,
    };
    put_le(&mut out[5..13], r.frame_offset);
    put_le(&mut out[13..17], r.frame_len.into());
    put_le(&mut out[17..21], r.offset.into());
    put_le(&mut out[21..25], r.len.into());
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

/// Decodes `b` as every record kind and checks each result against the
/// reference decoder; what decodes must encode back to `b`.
pub fn check_record_bytes(b: &[u8]) {
    match ref_location(b) {
        Some(r) => {
            assert_eq!(record::decode_location(b), Ok(r), "location");
            assert_eq!(record::encode_location(&r)[..], *b, "location bytes");
        }
        None => assert_eq!(record::decode_location(b), Err("chunk"), "location"),
    }
    assert_eq!(
        record::location_pack_no(b),
        (b.len() == 25).then(|| le(&b[0..4]) as u32),
        "location pack number"
    );
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
        assert_eq!(record::decode_chunk_id(b), Ok(ChunkId(id)), "chunk id");
    } else {
        assert_eq!(record::decode_pack_id(b), Err("pack"), "pack id");
        assert_eq!(record::decode_chunk_id(b), Err("chunk"), "chunk id");
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
/// the length of each record kind, so that the accepting paths are reached
/// at once) and the key and value of each of its first
/// `CODEC_MAX_RECORDS` records (see `raw_records`) are decoded as every
/// record kind by `check_record_bytes`.
pub fn check_index_records_codec(data: &[u8]) {
    check_record_bytes(data);
    for n in [4, 8, 12, 25, 32] {
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
/// the pack number is the first 4 bytes of the pack id (LE); each of the
/// first `CODEC_MAX_RECORDS` entries gives a location record in that pack; snapshot ids are the pack length
/// and every entry's frame offset, as i64. Each value is encoded twice
/// (same bytes), the bytes equal the reference encoding, and they decode
/// back to the value.
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

    let mut snapshots = vec![SnapshotId(pack_len as i64)];
    for e in entries.take(CODEC_MAX_RECORDS) {
        let rec = LocationRecord {
            pack_no,
            kind: e.kind,
            frame_offset: e.frame_offset,
            frame_len: e.frame_len,
            offset: e.offset,
            len: e.len,
        };
        let bytes = record::encode_location(&rec);
        assert_eq!(
            bytes,
            record::encode_location(&rec),
            "location deterministic"
        );
        assert_eq!(bytes, ref_encode_location(&rec), "location layout");
        assert_eq!(record::decode_location(&bytes), Ok(rec), "location");
        assert_eq!(record::location_pack_no(&bytes), Some(pack_no));
        assert_eq!(record::decode_chunk_id(&e.id.0), Ok(e.id), "chunk id");
        snapshots.push(SnapshotId(e.frame_offset as i64));
    }

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
