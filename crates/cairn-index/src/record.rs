//! The byte layout of the index's sled records, as pure functions.
//!
//! [`Index`](crate::Index) stores and reads every key and value through
//! these functions, so the layout is written down once and can be tested
//! (and fuzzed) without opening sled. All integers are fixed width; the
//! decoders check lengths and enum bytes and never panic. A decoder's
//! error is the name of the record kind that is damaged (`"pack entries"`,
//! `"pack"`, `"snapshot"`), which `Index` reports as
//! [`IndexError::Damaged`](crate::IndexError::Damaged).
//!
//! Layout:
//!
//! | tree | key | value |
//! | --- | --- | --- |
//! | `entries` | pack number, u32 **BE** (4 bytes) | the pack's entries: n entry records of 53 bytes (below), for records of at most 64 KiB |
//! | `entry_files` | pack number, u32 **BE** (4 bytes) | entry file record, 40 bytes (below), for longer records, which live in `INDEX/entries/NNNNNNNN` |
//! | `packs` | pack id, 32 bytes | pack record, 12 bytes (below) |
//! | `packno` | pack number, u32 **BE** (4 bytes) | pack id, 32 bytes |
//! | `snapshots` | snapshot id, i64 **BE** (8 bytes: ids from 1970 on sort by time; a negative id sorts after them all) | manifest bytes, as given |
//!
//! Entry record (53 bytes, integers LE), one per chunk of the pack, in the
//! pack trailer's order:
//!
//! | bytes | field |
//! | --- | --- |
//! | 0..32 | chunk id |
//! | 32 | kind: 0 = data, 1 = meta (anything else is damage) |
//! | 33..41 | frame offset, u64 |
//! | 41..45 | frame length, u32 |
//! | 45..49 | offset inside the decoded frame, u32 |
//! | 49..53 | chunk length, u32 |
//!
//! Pack record (12 bytes, integers LE): pack number u32 (bytes 0..4), pack
//! length u64 (bytes 4..12).
//!
//! Entry file record (40 bytes): the file's length, u64 LE (bytes 0..8),
//! and its blake3 hash (bytes 8..40). The file holds exactly what an
//! `entries` value would.

use cairn_format::pack::{BlobKind, PackEntry};
use cairn_format::{ChunkId, PackId, SnapshotId};

/// Length of one entry record in an `entries` value.
pub const ENTRY_LEN: usize = 53;

/// Length of an encoded pack record.
pub const PACK_RECORD_LEN: usize = 12;

/// The value of a `packs` record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackRecord {
    /// Number of the pack (key of its `packno` and `entries` records).
    pub pack_no: u32,
    /// Length of the pack file.
    pub pack_len: u64,
}

fn kind_byte(kind: BlobKind) -> u8 {
    match kind {
        BlobKind::Data => 0,
        BlobKind::Meta => 1,
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Encodes a pack's entries as an `entries` value.
pub fn encode_entries(entries: &[PackEntry]) -> Vec<u8> {
    let mut v = Vec::with_capacity(entries.len() * ENTRY_LEN);
    for e in entries {
        v.extend_from_slice(&e.id.0);
        v.push(kind_byte(e.kind));
        v.extend_from_slice(&e.frame_offset.to_le_bytes());
        v.extend_from_slice(&e.frame_len.to_le_bytes());
        v.extend_from_slice(&e.offset.to_le_bytes());
        v.extend_from_slice(&e.len.to_le_bytes());
    }
    v
}

/// The number of entry records in an `entries` value: its length must be
/// a multiple of [`ENTRY_LEN`], else `Err("pack entries")`.
pub fn entry_count(bytes: &[u8]) -> Result<usize, &'static str> {
    let n = bytes.len() / ENTRY_LEN;
    if n * ENTRY_LEN != bytes.len() {
        return Err("pack entries");
    }
    Ok(n)
}

/// The chunk id of entry `i`, read without decoding the rest: `None` past
/// the end.
pub fn entry_id(bytes: &[u8], i: usize) -> Option<ChunkId> {
    let at = i.checked_mul(ENTRY_LEN)?;
    let b = bytes.get(at..at.checked_add(32)?)?;
    Some(ChunkId(b.try_into().expect("32 bytes")))
}

/// Decodes entry `i` of an `entries` value: `Err("pack entries")` past the
/// end or on a kind byte other than 0 or 1.
pub fn decode_entry(bytes: &[u8], i: usize) -> Result<PackEntry, &'static str> {
    let at = i.checked_mul(ENTRY_LEN).ok_or("pack entries")?;
    let b = at
        .checked_add(ENTRY_LEN)
        .and_then(|end| bytes.get(at..end))
        .ok_or("pack entries")?;
    let kind = match b[32] {
        0 => BlobKind::Data,
        1 => BlobKind::Meta,
        _ => return Err("pack entries"),
    };
    Ok(PackEntry {
        id: ChunkId(b[..32].try_into().expect("32 bytes")),
        kind,
        frame_offset: u64_at(b, 33),
        frame_len: u32_at(b, 41),
        offset: u32_at(b, 45),
        len: u32_at(b, 49),
    })
}

/// Length of an encoded entry file record.
pub const ENTRY_FILE_RECORD_LEN: usize = 40;

/// The value of an `entry_files` record: what the entries file must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryFile {
    /// Length of the file.
    pub len: u64,
    /// blake3 of the file.
    pub hash: [u8; 32],
}

/// Encodes an entry file record.
pub fn encode_entry_file(rec: &EntryFile) -> [u8; ENTRY_FILE_RECORD_LEN] {
    let mut v = [0u8; ENTRY_FILE_RECORD_LEN];
    v[..8].copy_from_slice(&rec.len.to_le_bytes());
    v[8..].copy_from_slice(&rec.hash);
    v
}

/// Decodes an entry file record: exactly 40 bytes, else
/// `Err("pack entries file")`.
pub fn decode_entry_file(bytes: &[u8]) -> Result<EntryFile, &'static str> {
    if bytes.len() != ENTRY_FILE_RECORD_LEN {
        return Err("pack entries file");
    }
    Ok(EntryFile {
        len: u64_at(bytes, 0),
        hash: bytes[8..].try_into().expect("32 bytes"),
    })
}

/// Encodes a pack record.
pub fn encode_pack(rec: &PackRecord) -> [u8; PACK_RECORD_LEN] {
    let mut v = [0u8; PACK_RECORD_LEN];
    v[..4].copy_from_slice(&rec.pack_no.to_le_bytes());
    v[4..].copy_from_slice(&rec.pack_len.to_le_bytes());
    v
}

/// Decodes a pack record: exactly 12 bytes, else `Err("pack")`.
pub fn decode_pack(bytes: &[u8]) -> Result<PackRecord, &'static str> {
    if bytes.len() != PACK_RECORD_LEN {
        return Err("pack");
    }
    Ok(PackRecord {
        pack_no: u32_at(bytes, 0),
        pack_len: u64_at(bytes, 4),
    })
}

/// Encodes a pack number as a `packno` key (big-endian).
pub fn encode_pack_no(no: u32) -> [u8; 4] {
    no.to_be_bytes()
}

/// Decodes a `packno` key: exactly 4 bytes, else `Err("pack number")`.
pub fn decode_pack_no(bytes: &[u8]) -> Result<u32, &'static str> {
    let a: [u8; 4] = bytes.try_into().map_err(|_| "pack number")?;
    Ok(u32::from_be_bytes(a))
}

/// Decodes a pack id (a `packs` key or a `packno` value): exactly 32
/// bytes, else `Err("pack")`.
pub fn decode_pack_id(bytes: &[u8]) -> Result<PackId, &'static str> {
    Ok(PackId(bytes.try_into().map_err(|_| "pack")?))
}

/// Encodes a snapshot id as a `snapshots` key (i64 big-endian).
pub fn encode_snapshot_key(id: SnapshotId) -> [u8; 8] {
    id.0.to_be_bytes()
}

/// Decodes a `snapshots` key: exactly 8 bytes, else `Err("snapshot")`.
pub fn decode_snapshot_key(bytes: &[u8]) -> Result<SnapshotId, &'static str> {
    let a: [u8; 8] = bytes.try_into().map_err(|_| "snapshot")?;
    Ok(SnapshotId(i64::from_be_bytes(a)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_layout() {
        let e = PackEntry {
            id: ChunkId([0xAB; 32]),
            kind: BlobKind::Meta,
            frame_offset: 0x0d0c_0b0a_0908_0706,
            frame_len: 0x1110_0f0e,
            offset: 0x1514_1312,
            len: 0x1918_1716,
        };
        let other = PackEntry {
            kind: BlobKind::Data,
            id: ChunkId([1; 32]),
            ..e
        };
        let bytes = encode_entries(&[other, e]);
        assert_eq!(bytes.len(), 2 * ENTRY_LEN);
        let second = &bytes[ENTRY_LEN..];
        assert_eq!(&second[..32], &[0xAB; 32]);
        assert_eq!(
            second[32..],
            [1, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25]
        );
        assert_eq!(entry_count(&bytes), Ok(2));
        assert_eq!(decode_entry(&bytes, 1), Ok(e));
        assert_eq!(decode_entry(&bytes, 0), Ok(other));
        assert_eq!(entry_id(&bytes, 1), Some(e.id));
        assert_eq!(entry_id(&bytes, 2), None);
        assert_eq!(decode_entry(&bytes, 2), Err("pack entries"));
        assert_eq!(entry_count(&bytes[1..]), Err("pack entries"));
        let mut bad = bytes.clone();
        bad[ENTRY_LEN + 32] = 2;
        assert_eq!(decode_entry(&bad, 1), Err("pack entries"));
        assert_eq!(decode_entry(&bad, 0), Ok(other));
    }

    #[test]
    fn pack_and_key_layouts() {
        let rec = PackRecord {
            pack_no: 7,
            pack_len: 0x0102_0304_0506_0708,
        };
        let bytes = encode_pack(&rec);
        assert_eq!(bytes, [7, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(decode_pack(&bytes), Ok(rec));
        assert_eq!(decode_pack(&bytes[..11]), Err("pack"));
        assert_eq!(encode_pack_no(7), [0, 0, 0, 7]);
        assert_eq!(decode_pack_no(&[0, 0, 0, 7]), Ok(7));
        assert_eq!(decode_pack_no(&[0, 0, 7]), Err("pack number"));
        assert_eq!(decode_pack_id(&[9; 32]), Ok(PackId([9; 32])));
        assert_eq!(decode_pack_id(&[9; 33]), Err("pack"));
        assert_eq!(
            encode_snapshot_key(SnapshotId(-2)),
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]
        );
        assert_eq!(
            decode_snapshot_key(&(-2i64).to_be_bytes()),
            Ok(SnapshotId(-2))
        );
        assert_eq!(decode_snapshot_key(&[0; 7]), Err("snapshot"));
        let file = EntryFile {
            len: 0x0102_0304_0506_0708,
            hash: [0xCD; 32],
        };
        let bytes = encode_entry_file(&file);
        assert_eq!(bytes[..8], [8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(bytes[8..], [0xCD; 32]);
        assert_eq!(decode_entry_file(&bytes), Ok(file));
        assert_eq!(decode_entry_file(&bytes[1..]), Err("pack entries file"));
    }
}
