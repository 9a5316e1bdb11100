// Per-target checks for the decoders of cairn-format.
//
// One definition, two users: the cargo-fuzz targets under fuzz/fuzz_targets/
// (through fuzz/src/lib.rs) and the corpus replay test
// crates/cairn-format/tests/fuzz_corpus.rs, which both pull this file in
// with `#[path]`. Every check must return normally for every input; a panic
// is a finding. Where a decoder accepts the bytes, the value is encoded
// again and must decode to an equal value.
//
// Every enveloped object ends in a blake3 checksum that mutated bytes almost
// never match, so each envelope check runs twice: on the bytes as given and
// on a copy whose length field and checksum are recomputed ("fixed up"),
// which lets the fuzzer reach the bincode payload decoding behind them.

use cairn_format::envelope::{self, Kind};
use cairn_format::pack::{self, PackEntry, PackTrailer};
use cairn_format::{
    ChunkId, EntryKind, FileContent, FormatError, ListNode, Manifest, PackId, SnapshotId,
    StoreConfig, TreeNode,
};

/// A fuzz target's check: returns normally for every input.
pub type Check = fn(&[u8]);

/// Every fuzz target of cairn-format: its name (also its corpus folder,
/// `fuzz/corpus/<name>/`) and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("store_config", check_store_config),
    ("pack_parse", check_pack_parse),
    ("pack_trailer", check_pack_trailer),
    ("frame_decode", check_frame_decode),
    ("manifest_decode", check_manifest_decode),
    ("tree_node_decode", check_tree_node_decode),
    ("list_node_decode", check_list_node_decode),
    ("file_content_decode", check_file_content_decode),
    ("id_from_str", check_id_from_str),
];

/// The pack trailer's envelope kind (private in cairn-format; restated here
/// to re-encode decoded trailers).
pub const TRAILER_KIND: Kind = Kind {
    magic: *b"CPKT",
    version: 1,
    name: "pack trailer",
};

const ENVELOPE_OVERHEAD: usize = envelope::HEADER_LEN + envelope::CHECK_LEN;

/// `bytes` with the envelope length field and checksum recomputed, or `None`
/// when it is too short to be an envelope or already consistent.
pub fn fix_envelope(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.len() < ENVELOPE_OVERHEAD || bytes.len() - ENVELOPE_OVERHEAD > u32::MAX as usize {
        return None;
    }
    let mut out = bytes.to_vec();
    fix_envelope_in_place(&mut out);
    (out != bytes).then_some(out)
}

fn fix_envelope_in_place(out: &mut [u8]) {
    let body_end = out.len() - envelope::CHECK_LEN;
    let len = (body_end - envelope::HEADER_LEN) as u32;
    out[8..12].copy_from_slice(&len.to_le_bytes());
    let check = blake3::hash(&out[..body_end]);
    out[body_end..].copy_from_slice(&check.as_bytes()[..envelope::CHECK_LEN]);
}

/// Runs `check` on `data` and on its fixed-up copy, if that differs.
fn with_fixed_envelope(data: &[u8], mut check: impl FnMut(&[u8])) {
    check(data);
    if let Some(fixed) = fix_envelope(data) {
        check(&fixed);
    }
}

/// Formats an error: messages are built from decoded fields and must not
/// panic either.
fn touch(err: &FormatError) {
    let _ = err.to_string();
    let _ = format!("{err:?}");
}

/// Decodes `bytes`; on success re-encodes and checks that the encoding
/// decodes to the same value and is stable. Returns the decoded value.
fn round_trip<T: PartialEq + std::fmt::Debug>(
    bytes: &[u8],
    decode: fn(&[u8]) -> Result<T, FormatError>,
    encode: fn(&T) -> Result<Vec<u8>, FormatError>,
) -> Option<T> {
    let value = match decode(bytes) {
        Ok(v) => v,
        Err(e) => {
            touch(&e);
            return None;
        }
    };
    let encoded = encode(&value).expect("a decoded value must encode again");
    let again = decode(&encoded).expect("a re-encoded value must decode");
    assert_eq!(again, value, "decode(encode(x)) != x");
    assert_eq!(
        encode(&again).expect("encode"),
        encoded,
        "encoding is not deterministic"
    );
    let _ = format!("{value:?}");
    Some(value)
}

/// `StoreConfig::decode`; accepted configs are also valid by its own rules.
pub fn check_store_config(data: &[u8]) {
    with_fixed_envelope(data, |bytes| {
        if let Some(cfg) = round_trip(bytes, StoreConfig::decode, StoreConfig::encode) {
            cfg.chunking
                .validate()
                .expect("decode accepted invalid chunking parameters");
            assert_eq!(cfg.store_id_hex().len(), 32);
        }
    });
}

/// `Manifest::decode`; also formats every id it holds (as `cairn list` does).
pub fn check_manifest_decode(data: &[u8]) {
    with_fixed_envelope(data, |bytes| {
        if let Some(m) = round_trip(bytes, Manifest::decode, Manifest::encode) {
            let _ = m.id.to_string();
            let _ = m.parent.map(|p| p.to_string());
            for root in &m.roots {
                let _ = root.tree.map(|t| t.to_string());
                if let Some(entry) = &root.file {
                    let _ = entry.safe_name();
                }
            }
        }
    });
}

/// `TreeNode::decode`; accepted nodes have sorted, unique names, and
/// `safe_name` never panics on them.
pub fn check_tree_node_decode(data: &[u8]) {
    with_fixed_envelope(data, |bytes| {
        if let Some(node) = round_trip(bytes, TreeNode::decode, TreeNode::encode) {
            assert!(
                node.entries.windows(2).all(|w| w[0].name < w[1].name),
                "decode accepted unsorted or duplicate names"
            );
            for entry in &node.entries {
                if let Ok(name) = entry.safe_name() {
                    assert!(!name.is_empty() && !name.contains(&b'/') && !name.contains(&0));
                    assert!(name != b"." && name != b"..");
                }
                if let EntryKind::File(content) = &entry.kind {
                    let _ = format!("{:?}", content.chunks);
                }
            }
        }
    });
}

/// `ListNode::decode`.
pub fn check_list_node_decode(data: &[u8]) {
    with_fixed_envelope(data, |bytes| {
        round_trip(bytes, ListNode::decode, ListNode::encode);
    });
}

/// `FileContent::decode`.
pub fn check_file_content_decode(data: &[u8]) {
    with_fixed_envelope(data, |bytes| {
        round_trip(bytes, FileContent::decode, FileContent::encode);
    });
}

/// `pack::parse_pack` on a whole pack; fixed-up copy: the trailer is taken
/// to start at the last `CPKT` magic, and footer length and trailer
/// checksum are recomputed.
pub fn check_pack_parse(data: &[u8]) {
    check_pack_bytes(data);
    if let Some(fixed) = fix_pack(data) {
        check_pack_bytes(&fixed);
    }
}

/// `data` with footer and trailer envelope made consistent, if possible.
pub fn fix_pack(data: &[u8]) -> Option<Vec<u8>> {
    let header = pack::HEADER_LEN as usize;
    let footer = pack::FOOTER_LEN as usize;
    if data.len() < header + ENVELOPE_OVERHEAD + footer {
        return None;
    }
    let end = data.len() - footer;
    let start = data[header..end]
        .windows(4)
        .rposition(|w| w == TRAILER_KIND.magic)?
        + header;
    if end - start < ENVELOPE_OVERHEAD || end - start > u32::MAX as usize {
        return None;
    }
    let mut out = data.to_vec();
    fix_envelope_in_place(&mut out[start..end]);
    out[end..end + 4].copy_from_slice(&((end - start) as u32).to_le_bytes());
    out[end + 4..].copy_from_slice(b"CPKE");
    (out != data).then_some(out)
}

/// Checks a trailer entry against the frame area `[HEADER_LEN, trailer_offset)`.
fn assert_entry_fits(e: &PackEntry, trailer_offset: u64) {
    assert!(
        e.frame_offset >= pack::HEADER_LEN,
        "entry before the frames"
    );
    assert!(
        e.frame_offset
            .checked_add(u64::from(e.frame_len))
            .is_some_and(|end| end <= trailer_offset),
        "entry past the frames"
    );
    assert!(e.frame_len as usize >= pack::FRAME_HEADER_LEN);
    assert!(u64::from(e.offset) + u64::from(e.len) <= pack::MAX_FRAME_RAW as u64);
}

fn check_pack_bytes(bytes: &[u8]) {
    let trailer = match pack::parse_pack(bytes) {
        Ok(t) => t,
        Err(e) => {
            touch(&e);
            return;
        }
    };
    let len = bytes.len() as u64;
    let footer = &bytes[bytes.len() - pack::FOOTER_LEN as usize..];
    let (off, tlen) = pack::trailer_location(len, footer).expect("parse_pack accepted the footer");
    assert_eq!(off + tlen + pack::FOOTER_LEN, len);
    for e in &trailer.entries {
        assert_entry_fits(e, off);
    }
    // Round trip: the same frames with the trailer encoded again.
    let encoded = envelope::encode(TRAILER_KIND, &trailer).expect("trailer encodes");
    let mut rebuilt = bytes[..off as usize].to_vec();
    rebuilt.extend_from_slice(&encoded);
    rebuilt.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
    rebuilt.extend_from_slice(b"CPKE");
    let again = pack::parse_pack(&rebuilt).expect("a re-encoded pack must parse");
    assert_eq!(again, trailer, "parse(encode(trailer)) != trailer");
    // Frames and chunks the entries point at: a few distinct frames at most
    // (one frame can expand to 32 MiB).
    let mut seen: Vec<(u64, u32)> = Vec::new();
    for e in &trailer.entries {
        let key = (e.frame_offset, e.frame_len);
        if !seen.contains(&key) {
            if seen.len() == 4 {
                continue;
            }
            seen.push(key);
        }
        let start = e.frame_offset as usize;
        let frame = &bytes[start..start + e.frame_len as usize];
        match pack::decode_frame(frame) {
            Ok(raw) => match pack::chunk_in_frame(&raw, e) {
                Ok(chunk) => assert_eq!(chunk.len(), e.len as usize),
                Err(err) => touch(&err),
            },
            Err(err) => touch(&err),
        }
    }
}

/// `pack::trailer_location` and `pack::decode_trailer`. Input: pack length
/// (u64 LE), 8 footer bytes, then the trailer bytes.
pub fn check_pack_trailer(data: &[u8]) {
    if data.len() < 16 {
        let _ = pack::trailer_location(data.len() as u64, data);
        return;
    }
    let pack_len = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
    let footer = &data[8..16];
    let trailer_offset = match pack::trailer_location(pack_len, footer) {
        Ok((off, len)) => {
            assert!(off >= pack::HEADER_LEN, "trailer starts inside the header");
            assert_eq!(off + len + pack::FOOTER_LEN, pack_len);
            // The footer is a function of the length: encode it again.
            let mut again = (len as u32).to_le_bytes().to_vec();
            again.extend_from_slice(b"CPKE");
            assert_eq!(again, footer);
            off
        }
        Err(e) => {
            touch(&e);
            pack_len
        }
    };
    with_fixed_envelope(&data[16..], |bytes| {
        check_trailer_bytes(bytes, trailer_offset)
    });
}

fn check_trailer_bytes(bytes: &[u8], trailer_offset: u64) {
    let trailer: PackTrailer = match pack::decode_trailer(bytes, trailer_offset) {
        Ok(t) => t,
        Err(e) => {
            touch(&e);
            return;
        }
    };
    for e in &trailer.entries {
        assert_entry_fits(e, trailer_offset);
    }
    let encoded = envelope::encode(TRAILER_KIND, &trailer).expect("trailer encodes");
    let again = pack::decode_trailer(&encoded, trailer_offset).expect("re-encoded trailer decodes");
    assert_eq!(again, trailer, "decode(encode(trailer)) != trailer");
}

/// `pack::decode_frame`; fixed-up copy: reserved bytes zeroed, stored length
/// set to the body length and raw length to what the body claims.
pub fn check_frame_decode(data: &[u8]) {
    check_frame_bytes(data);
    if let Some(fixed) = fix_frame(data) {
        check_frame_bytes(&fixed);
    }
}

/// `data` with a consistent frame header, if possible.
pub fn fix_frame(data: &[u8]) -> Option<Vec<u8>> {
    let h = pack::FRAME_HEADER_LEN;
    if data.len() < h || data.len() - h > u32::MAX as usize {
        return None;
    }
    let mut out = data.to_vec();
    out[1..4].fill(0);
    let stored = (data.len() - h) as u32;
    out[8..12].copy_from_slice(&stored.to_le_bytes());
    let raw_len = match out[0] {
        0 => Some(stored),
        1 => zstd::zstd_safe::get_frame_content_size(&out[h..])
            .ok()
            .flatten()
            .filter(|&n| n <= pack::MAX_FRAME_RAW as u64)
            .map(|n| n as u32),
        _ => None,
    };
    if let Some(n) = raw_len {
        out[4..8].copy_from_slice(&n.to_le_bytes());
    }
    (out != data).then_some(out)
}

fn check_frame_bytes(frame: &[u8]) {
    let raw = match pack::decode_frame(frame) {
        Ok(raw) => raw,
        Err(e) => {
            touch(&e);
            return;
        }
    };
    let raw_len = u32::from_le_bytes(frame[4..8].try_into().expect("4 bytes"));
    assert_eq!(
        raw.len(),
        raw_len as usize,
        "frame decoded to the wrong length"
    );
    if frame[0] == 0 {
        assert_eq!(&frame[pack::FRAME_HEADER_LEN..], &raw[..]);
    }
    let encoded = pack::encode_frame(&raw, 1).expect("decoded frame encodes");
    let again = pack::decode_frame(&encoded).expect("re-encoded frame decodes");
    assert!(again == raw, "decode(encode(frame)) != frame");
}

/// `FromStr` of `SnapshotId`, `ChunkId` and `PackId`: whatever parses
/// prints back as the same text and parses to the same id. Also, from the
/// first 8 bytes as unix seconds: a snapshot id that prints in the
/// documented 18-character form parses back to itself.
pub fn check_id_from_str(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        match s.parse::<SnapshotId>() {
            Ok(id) => {
                let text = id.to_string();
                assert_eq!(text, s, "snapshot id text is not canonical");
                assert_eq!(text.parse::<SnapshotId>().expect("reparse"), id);
            }
            Err(e) => touch(&e),
        }
        match s.parse::<ChunkId>() {
            Ok(id) => {
                assert_eq!(id.to_hex(), s.to_ascii_lowercase());
                assert_eq!(id.to_string().parse::<ChunkId>().expect("reparse"), id);
                let _ = format!("{id:?} {}", id.short());
            }
            Err(e) => touch(&e),
        }
        match s.parse::<PackId>() {
            Ok(id) => {
                assert_eq!(id.to_hex(), s.to_ascii_lowercase());
                assert_eq!(id.to_string().parse::<PackId>().expect("reparse"), id);
            }
            Err(e) => touch(&e),
        }
    }
    if data.len() >= 8 {
        let id = SnapshotId::from_unix(i64::from_le_bytes(data[..8].try_into().expect("8")));
        let text = id.to_string();
        let _ = format!("{id:?}");
        if text.len() == 18 && !text.starts_with(['@', '-', '+']) {
            assert_eq!(
                text.parse::<SnapshotId>().expect("a printed id must parse"),
                id
            );
        }
    }
}
