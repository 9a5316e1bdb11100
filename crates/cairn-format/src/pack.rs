//! Pack files: immutable containers of compressed chunk frames.
//!
//! ```text
//! header   16 bytes   b"CAIRNPAK", version u16 LE, 6 reserved zero bytes
//! frames   ...        each: codec u8, 3 zero bytes, raw_len u32 LE,
//!                     stored_len u32 LE, then stored_len bytes
//! trailer  envelope   b"CPKT": the list of PackEntry (chunk id, kind,
//!                     frame offset and length, offset and length of the
//!                     chunk inside the decompressed frame)
//! footer   8 bytes    trailer length u32 LE, b"CPKE"
//! ```
//! A frame groups consecutive new chunks (about `frame_target` raw bytes)
//! so that small chunks compress together; a chunk never spans frames.
//! The pack's id is blake3 of the whole file, and its name. Packs can be
//! copied as they are (replication) and rewritten without some chunks
//! (prune) because every entry is self-contained in its frame.

use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use crate::envelope::{self, Kind};
use crate::{ChunkId, FormatError, PackId};

/// Magic at the start of every pack.
pub const MAGIC: &[u8; 8] = b"CAIRNPAK";
/// Pack layout version.
pub const VERSION: u16 = 1;
/// Length of the pack header.
pub const HEADER_LEN: u64 = 16;
/// Length of the footer.
pub const FOOTER_LEN: u64 = 8;
/// Length of a frame header.
pub const FRAME_HEADER_LEN: usize = 12;
/// Largest decompressed frame a reader accepts.
pub const MAX_FRAME_RAW: usize = 32 << 20;
const FOOTER_MAGIC: &[u8; 4] = b"CPKE";
const TRAILER: Kind = Kind {
    magic: *b"CPKT",
    version: 1,
    name: "pack trailer",
};

/// What a chunk holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BlobKind {
    /// File content.
    Data,
    /// An encoded tree or chunk-list node.
    Meta,
}

/// Where one chunk lives inside a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackEntry {
    /// The chunk's id.
    pub id: ChunkId,
    /// Data or metadata.
    pub kind: BlobKind,
    /// Offset of the frame (its header) in the pack.
    pub frame_offset: u64,
    /// Length of the frame including its header.
    pub frame_len: u32,
    /// Offset of the chunk inside the decompressed frame.
    pub offset: u32,
    /// Length of the chunk.
    pub len: u32,
}

/// The list of entries at the end of a pack.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackTrailer {
    /// Every chunk in the pack, in frame order.
    pub entries: Vec<PackEntry>,
}

/// How a frame's bytes are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Codec {
    /// Stored as is: compression did not pay.
    Raw = 0,
    /// zstd.
    Zstd = 1,
}

/// Builds one frame from the raw bytes of consecutive chunks: zstd at
/// `level`, or raw when zstd saves less than 3 %. Returns the encoded frame.
pub fn encode_frame(raw: &[u8], level: i32) -> Result<Vec<u8>, FormatError> {
    let raw_len = raw.len();
    if raw_len > MAX_FRAME_RAW {
        return Err(FormatError::Invalid {
            what: "frame",
            detail: format!("{raw_len} raw bytes exceed the frame limit"),
        });
    }
    let compressed = compress(raw, level).map_err(|e| FormatError::Compression {
        what: "frame",
        detail: e.to_string(),
    })?;
    let zstd_pays = compressed.len() < raw_len - raw_len / 32;
    let (codec, body) = if zstd_pays {
        (Codec::Zstd, &compressed[..])
    } else {
        (Codec::Raw, raw)
    };
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + body.len());
    out.extend_from_slice(&[codec as u8, 0, 0, 0]);
    out.extend_from_slice(&(raw_len as u32).to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

thread_local! {
    /// This thread's zstd compressor and its level: a context costs about
    /// as much to set up as compressing a small frame.
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
    /// This thread's zstd decompressor, for the same reason.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Decompresses `body` (at most `capacity` bytes) with this thread's
/// decompressor.
fn decompress(body: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        slot.as_mut().expect("just set").decompress(body, capacity)
    })
}

/// Compresses `raw` at `level` with this thread's compressor.
fn compress(raw: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if !matches!(slot.as_ref(), Some((l, _)) if *l == level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        slot.as_mut().expect("just set").1.compress(raw)
    })
}

/// Decodes one frame (header included) to its raw bytes.
pub fn decode_frame(frame: &[u8]) -> Result<Vec<u8>, FormatError> {
    let what = "frame";
    if frame.len() < FRAME_HEADER_LEN {
        return Err(FormatError::Truncated { what });
    }
    let raw_len = u32::from_le_bytes(frame[4..8].try_into().expect("4 bytes")) as usize;
    let stored_len = u32::from_le_bytes(frame[8..12].try_into().expect("4 bytes")) as usize;
    if frame[1..4] != [0, 0, 0] {
        return Err(FormatError::Invalid {
            what,
            detail: "reserved header bytes are set".into(),
        });
    }
    if raw_len > MAX_FRAME_RAW || frame.len() != FRAME_HEADER_LEN + stored_len {
        return Err(FormatError::Truncated { what });
    }
    let body = &frame[FRAME_HEADER_LEN..];
    match frame[0] {
        0 if stored_len == raw_len => Ok(body.to_vec()),
        1 => {
            let out = decompress(body, raw_len).map_err(|e| FormatError::Compression {
                what,
                detail: e.to_string(),
            })?;
            if out.len() != raw_len {
                return Err(FormatError::Truncated { what });
            }
            Ok(out)
        }
        0 => Err(FormatError::Truncated { what }),
        c => Err(FormatError::Invalid {
            what,
            detail: format!("unknown codec {c}"),
        }),
    }
}

/// The chunk at `entry` inside its decoded frame.
pub fn chunk_in_frame<'a>(raw: &'a [u8], entry: &PackEntry) -> Result<&'a [u8], FormatError> {
    let start = entry.offset as usize;
    raw.get(start..start + entry.len as usize)
        .ok_or(FormatError::Truncated { what: "frame" })
}

/// Writes a pack frame by frame into `W`, hashing as it goes.
pub struct PackBuilder<W: Write> {
    out: W,
    hasher: blake3::Hasher,
    len: u64,
    trailer: PackTrailer,
}

/// A frame's chunk: id, kind, and length (chunks follow each other in the frame).
pub type FrameChunk = (ChunkId, BlobKind, u32);

impl<W: Write> PackBuilder<W> {
    /// Starts a pack, writing its header.
    pub fn new(out: W) -> io::Result<Self> {
        let mut b = Self {
            out,
            hasher: blake3::Hasher::new(),
            len: 0,
            trailer: PackTrailer::default(),
        };
        let mut header = [0u8; HEADER_LEN as usize];
        header[..8].copy_from_slice(MAGIC);
        header[8..10].copy_from_slice(&VERSION.to_le_bytes());
        b.write(&header)?;
        Ok(b)
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Appends an encoded frame holding `chunks`, in order.
    pub fn add_frame(&mut self, frame: &[u8], chunks: &[FrameChunk]) -> io::Result<()> {
        let frame_offset = self.len;
        let mut offset = 0u32;
        for &(id, kind, len) in chunks {
            self.trailer.entries.push(PackEntry {
                id,
                kind,
                frame_offset,
                frame_len: frame.len() as u32,
                offset,
                len,
            });
            offset += len;
        }
        self.write(frame)
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no frame was added.
    pub fn is_empty(&self) -> bool {
        self.trailer.entries.is_empty()
    }

    /// Writes trailer and footer; returns the pack id, its entries, its
    /// length and the writer.
    pub fn finish(mut self) -> io::Result<(PackId, PackTrailer, u64, W)> {
        let trailer = envelope::encode(TRAILER, &self.trailer)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.write(&trailer)?;
        let mut footer = [0u8; FOOTER_LEN as usize];
        footer[..4].copy_from_slice(&(trailer.len() as u32).to_le_bytes());
        footer[4..].copy_from_slice(FOOTER_MAGIC);
        self.write(&footer)?;
        let id = PackId(*self.hasher.finalize().as_bytes());
        Ok((id, self.trailer, self.len, self.out))
    }
}

/// From a pack's length and its last [`FOOTER_LEN`] bytes, where its
/// trailer is: (offset, length).
pub fn trailer_location(pack_len: u64, footer: &[u8]) -> Result<(u64, u64), FormatError> {
    let what = "pack footer";
    if footer.len() != FOOTER_LEN as usize || pack_len < HEADER_LEN + FOOTER_LEN {
        return Err(FormatError::Truncated { what });
    }
    if &footer[4..] != FOOTER_MAGIC {
        return Err(FormatError::BadMagic { expected: what });
    }
    let len = u64::from(u32::from_le_bytes(footer[..4].try_into().expect("4 bytes")));
    if len > pack_len - HEADER_LEN - FOOTER_LEN {
        return Err(FormatError::Truncated { what });
    }
    Ok((pack_len - FOOTER_LEN - len, len))
}

/// Checks a pack header.
pub fn check_header(header: &[u8]) -> Result<(), FormatError> {
    if header.len() < HEADER_LEN as usize || &header[..8] != MAGIC {
        return Err(FormatError::BadMagic {
            expected: "pack file",
        });
    }
    let version = u16::from_le_bytes([header[8], header[9]]);
    if version > VERSION {
        return Err(FormatError::NewerVersion {
            what: "pack file",
            found: version.into(),
            supported: VERSION.into(),
        });
    }
    if header[10..HEADER_LEN as usize].iter().any(|b| *b != 0) {
        return Err(FormatError::Invalid {
            what: "pack header",
            detail: "reserved bytes are not zero".into(),
        });
    }
    Ok(())
}

/// Decodes a trailer and checks every entry lies in the frame area
/// `[HEADER_LEN, trailer_offset)` and inside its frame.
pub fn decode_trailer(bytes: &[u8], trailer_offset: u64) -> Result<PackTrailer, FormatError> {
    let (trailer, _): (PackTrailer, _) = envelope::decode(TRAILER, bytes)?;
    for e in &trailer.entries {
        let frame_end = e.frame_offset.checked_add(u64::from(e.frame_len));
        let fits = e.frame_offset >= HEADER_LEN
            && frame_end.is_some_and(|end| end <= trailer_offset)
            && (e.frame_len as usize) >= FRAME_HEADER_LEN
            && u64::from(e.offset) + u64::from(e.len) <= MAX_FRAME_RAW as u64;
        if !fits {
            return Err(FormatError::Invalid {
                what: "pack trailer",
                detail: format!("entry for chunk {} lies outside the pack", e.id.short()),
            });
        }
    }
    Ok(trailer)
}

/// Reads a whole pack held in memory: header, trailer, entries.
pub fn parse_pack(bytes: &[u8]) -> Result<PackTrailer, FormatError> {
    check_header(bytes)?;
    let len = bytes.len() as u64;
    let footer = &bytes[bytes.len().saturating_sub(FOOTER_LEN as usize)..];
    let (off, tlen) = trailer_location(len, footer)?;
    decode_trailer(&bytes[off as usize..(off + tlen) as usize], off)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_reserved_bytes_must_be_zero() {
        let (_, _, _, bytes) = PackBuilder::new(Vec::new()).unwrap().finish().unwrap();
        check_header(&bytes[..HEADER_LEN as usize]).unwrap();
        for i in 10..HEADER_LEN as usize {
            let mut h = bytes[..HEADER_LEN as usize].to_vec();
            h[i] = 1;
            assert!(check_header(&h).is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn pack_round_trip_and_raw_fallback() {
        let text = b"abcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabc".repeat(100);
        let mut noise = vec![0u8; 5000];
        blake3::Hasher::new()
            .update(b"seed")
            .finalize_xof()
            .fill(&mut noise);
        let mut b = PackBuilder::new(Vec::new()).unwrap();
        let f1 = encode_frame(&[&text[..], b"tail"].concat(), 3).unwrap();
        assert_eq!(f1[0], Codec::Zstd as u8);
        b.add_frame(
            &f1,
            &[
                (ChunkId::of(&text), BlobKind::Data, text.len() as u32),
                (ChunkId::of(b"tail"), BlobKind::Meta, 4),
            ],
        )
        .unwrap();
        let f2 = encode_frame(&noise, 3).unwrap();
        assert_eq!(f2[0], Codec::Raw as u8);
        b.add_frame(&f2, &[(ChunkId::of(&noise), BlobKind::Data, 5000)])
            .unwrap();
        let (id, trailer, len, bytes) = b.finish().unwrap();
        assert_eq!(len as usize, bytes.len());
        assert_eq!(id, PackId::of(&bytes));
        let parsed = parse_pack(&bytes).unwrap();
        assert_eq!(parsed, trailer);
        for e in &parsed.entries {
            let frame =
                &bytes[e.frame_offset as usize..e.frame_offset as usize + e.frame_len as usize];
            let raw = decode_frame(frame).unwrap();
            assert_eq!(ChunkId::of(chunk_in_frame(&raw, e).unwrap()), e.id);
        }
    }

    #[test]
    fn truncated_pack_is_an_error_not_a_panic() {
        let mut b = PackBuilder::new(Vec::new()).unwrap();
        let f = encode_frame(b"x", 1).unwrap();
        b.add_frame(&f, &[(ChunkId::of(b"x"), BlobKind::Data, 1)])
            .unwrap();
        let (_, _, _, bytes) = b.finish().unwrap();
        for n in 0..bytes.len() {
            assert!(parse_pack(&bytes[..n]).is_err());
        }
    }
}
