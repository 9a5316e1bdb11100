// Per-target checks for cairn-index.
//
// Shared, like checks_format.rs, by the cargo-fuzz targets (through
// fuzz/src/lib.rs) and by crates/cairn-index/tests/fuzz_corpus.rs.
//
// cairn-index decodes its 25-byte chunk location records and 12-byte pack
// records inside `Index::lookup` and `Index::packs`; no public function takes
// those bytes. Two targets reach them anyway:
// - `index_roundtrip` builds arbitrary `PackEntry` lists from the input,
//   stores them with `add_pack` and checks that `lookup`, `contains`,
//   `packs` and `chunk_count` give back exactly what was stored, and that
//   `remove_pack` forgets it all again;
// - `index_records` writes raw key/value bytes into a sled database laid out
//   like an index, opens it with `Index::open` and checks every decoding
//   method against a reference decoder written from the record layout: a
//   damaged record must give `IndexError::Damaged`, never a panic or a
//   wrong value. It opens sled twice per input, so it is slow.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cairn_format::pack::{BlobKind, PackEntry};
use cairn_format::{ChunkId, PackId, SnapshotId};
use cairn_index::{ChunkLocation, Index, IndexError, IndexState, INDEX_VERSION};

/// Store id used by every index these checks open.
pub const STORE_ID: [u8; 16] = *b"cairn-fuzz-store";

/// Reads fixed-width fields from the front of the fuzz input; missing
/// bytes read as zero.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn take(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head.to_vec()
    }
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let head = self.take(N);
        out[..head.len()].copy_from_slice(&head);
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
/// length, offset and length u32, all LE.
pub fn roundtrip_input(data: &[u8]) -> (PackId, u64, Vec<PackEntry>) {
    let mut input = Input(data);
    let pack = PackId(input.bytes());
    let pack_len = u64::from_le_bytes(input.bytes());
    let mut entries = Vec::new();
    while !input.is_empty() {
        entries.push(PackEntry {
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
        });
    }
    (pack, pack_len, entries)
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

/// Decodes the `index_records` input: a flags byte (bit 0: leave out the
/// `complete` marker; bit 1: foreign store id; bit 2: wrong index
/// version), then records: tree selector (low 2 bits: chunks, packs,
/// packno, snapshots), key length, key, value length, value.
fn records_input(data: &[u8]) -> (u8, RawTrees) {
    let mut input = Input(data);
    let flags = input.u8();
    let mut trees = RawTrees::default();
    while !input.is_empty() {
        let tree = match input.u8() & 3 {
            0 => &mut trees.chunks,
            1 => &mut trees.packs,
            2 => &mut trees.packno,
            _ => &mut trees.snapshots,
        };
        let klen = input.u8() as usize;
        let key = input.take(klen);
        let vlen = input.u8() as usize;
        let value = input.take(vlen);
        tree.insert(key, value);
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
