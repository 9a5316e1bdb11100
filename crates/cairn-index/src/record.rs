//! The byte layout of the index's sled records, as pure functions.
//!
//! [`Index`](crate::Index) stores and reads every key and value through
//! these functions, so the layout is written down once and can be tested
//! (and fuzzed) without opening sled. All integers are fixed width; the
//! decoders check lengths and enum bytes and never panic. A decoder's
//! error is the name of the record kind that is damaged (`"chunk"`,
//! `"pack"`, `"snapshot"`), which `Index` reports as
//! [`IndexError::Damaged`](crate::IndexError::Damaged).
//!
//! Layout:
//!
//! | tree | key | value |
//! | --- | --- | --- |
//! | `chunks` | chunk id, 32 bytes | location record, 25 bytes (below) |
//! | `packs` | pack id, 32 bytes | pack record, 12 bytes (below) |
//! | `packno` | pack number, u32 **BE** (4 bytes) | pack id, 32 bytes |
//! | `snapshots` | snapshot id, i64 **BE** (8 bytes: ids from 1970 on sort by time; a negative id sorts after them all) | manifest bytes, as given |
//!
//! Location record (25 bytes, integers LE):
//!
//! | bytes | field |
//! | --- | --- |
//! | 0..4 | pack number, u32 |
//! | 4 | kind: 0 = data, 1 = meta (anything else is damage) |
//! | 5..13 | frame offset, u64 |
//! | 13..17 | frame length, u32 |
//! | 17..21 | offset inside the decoded frame, u32 |
//! | 21..25 | chunk length, u32 |
//!
//! Pack record (12 bytes, integers LE): pack number u32 (bytes 0..4), pack
//! length u64 (bytes 4..12).

use cairn_format::pack::BlobKind;
use cairn_format::{ChunkId, PackId, SnapshotId};

/// Length of an encoded location record.
pub const LOCATION_LEN: usize = 25;

/// Length of an encoded pack record.
pub const PACK_RECORD_LEN: usize = 12;

/// The value of a `chunks` record: where a chunk lives, with its pack
/// named by pack number (the `packno` tree maps it to the pack id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocationRecord {
    /// Number of the pack (key of `packno`).
    pub pack_no: u32,
    /// Data or metadata.
    pub kind: BlobKind,
    /// Frame offset in the pack.
    pub frame_offset: u64,
    /// Frame length.
    pub frame_len: u32,
    /// Offset inside the decoded frame.
    pub offset: u32,
    /// Chunk length.
    pub len: u32,
}

/// The value of a `packs` record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackRecord {
    /// Number of the pack (key of `packno`, first field of its chunks'
    /// location records).
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

/// Encodes a location record.
pub fn encode_location(rec: &LocationRecord) -> [u8; LOCATION_LEN] {
    let mut v = [0u8; LOCATION_LEN];
    v[0..4].copy_from_slice(&rec.pack_no.to_le_bytes());
    v[4] = kind_byte(rec.kind);
    v[5..13].copy_from_slice(&rec.frame_offset.to_le_bytes());
    v[13..17].copy_from_slice(&rec.frame_len.to_le_bytes());
    v[17..21].copy_from_slice(&rec.offset.to_le_bytes());
    v[21..25].copy_from_slice(&rec.len.to_le_bytes());
    v
}

/// Decodes a location record: exactly 25 bytes with a kind byte of 0 or 1,
/// else `Err("chunk")`.
pub fn decode_location(bytes: &[u8]) -> Result<LocationRecord, &'static str> {
    if bytes.len() != LOCATION_LEN {
        return Err("chunk");
    }
    let kind = match bytes[4] {
        0 => BlobKind::Data,
        1 => BlobKind::Meta,
        _ => return Err("chunk"),
    };
    Ok(LocationRecord {
        pack_no: u32_at(bytes, 0),
        kind,
        frame_offset: u64_at(bytes, 5),
        frame_len: u32_at(bytes, 13),
        offset: u32_at(bytes, 17),
        len: u32_at(bytes, 21),
    })
}

/// The pack number of a location record, read without decoding the rest:
/// `None` unless the record has the length of one. (Pack removal and the
/// per-pack chunk scan match records by this number alone.)
pub fn location_pack_no(bytes: &[u8]) -> Option<u32> {
    if bytes.len() != LOCATION_LEN {
        return None;
    }
    Some(u32_at(bytes, 0))
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

/// Decodes a chunk id (a `chunks` key): exactly 32 bytes, else
/// `Err("chunk")`.
pub fn decode_chunk_id(bytes: &[u8]) -> Result<ChunkId, &'static str> {
    Ok(ChunkId(bytes.try_into().map_err(|_| "chunk")?))
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
    fn location_layout() {
        let rec = LocationRecord {
            pack_no: 0x0403_0201,
            kind: BlobKind::Meta,
            frame_offset: 0x0d0c_0b0a_0908_0706,
            frame_len: 0x1110_0f0e,
            offset: 0x1514_1312,
            len: 0x1918_1716,
        };
        let bytes = encode_location(&rec);
        assert_eq!(
            bytes,
            [
                1, 2, 3, 4, 1, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23,
                24, 25
            ]
        );
        assert_eq!(decode_location(&bytes), Ok(rec));
        assert_eq!(location_pack_no(&bytes), Some(0x0403_0201));
        let mut bad = bytes;
        bad[4] = 2;
        assert_eq!(decode_location(&bad), Err("chunk"));
        assert_eq!(location_pack_no(&bad), Some(0x0403_0201));
        assert_eq!(decode_location(&bytes[..24]), Err("chunk"));
        assert_eq!(location_pack_no(&bytes[..24]), None);
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
        assert_eq!(decode_chunk_id(&[9; 32]), Ok(ChunkId([9; 32])));
        assert_eq!(decode_chunk_id(&[]), Err("chunk"));
        assert_eq!(
            encode_snapshot_key(SnapshotId(-2)),
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]
        );
        assert_eq!(
            decode_snapshot_key(&(-2i64).to_be_bytes()),
            Ok(SnapshotId(-2))
        );
        assert_eq!(decode_snapshot_key(&[0; 7]), Err("snapshot"));
    }
}
