//! The versioned envelope around every encoded object.
//!
//! ```text
//! magic    4 bytes   what the object is (b"CCFG", b"CSNP", ...)
//! version  u16 LE    version of that object's schema
//! codec    u8        1 = bincode 2 "standard" (varint) serde encoding
//! flags    u8        0; reserved (e.g. for encrypted payloads)
//! length   u32 LE    payload length
//! payload  length bytes
//! check    16 bytes  blake3 of everything above, truncated
//! ```
//! The encoding can change later by bumping `codec` or `version`; a reader
//! refuses what it does not know with [`FormatError::NewerVersion`].

use serde::{de::DeserializeOwned, Serialize};

use crate::FormatError;

/// The kind of an enveloped object: its magic, schema version and name.
#[derive(Clone, Copy, Debug)]
pub struct Kind {
    /// 4-byte magic.
    pub magic: [u8; 4],
    /// Schema version written now; older ones must stay readable.
    pub version: u16,
    /// Name used in messages.
    pub name: &'static str,
}

/// Bytes before the payload.
pub const HEADER_LEN: usize = 12;
/// Bytes after the payload.
pub const CHECK_LEN: usize = 16;
/// Largest payload any reader accepts (256 MiB).
pub const MAX_PAYLOAD: usize = 256 << 20;
const CODEC_BINCODE2: u8 = 1;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_PAYLOAD>()
}

/// Encodes `value` as an enveloped object of `kind`.
pub fn encode<T: Serialize>(kind: Kind, value: &T) -> Result<Vec<u8>, FormatError> {
    let payload =
        bincode::serde::encode_to_vec(value, config()).map_err(|e| FormatError::Decode {
            what: kind.name,
            detail: e.to_string(),
        })?;
    if payload.len() > MAX_PAYLOAD {
        return Err(FormatError::Invalid {
            what: kind.name,
            detail: format!("payload of {} bytes is too large", payload.len()),
        });
    }
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + CHECK_LEN);
    out.extend_from_slice(&kind.magic);
    out.extend_from_slice(&kind.version.to_le_bytes());
    out.push(CODEC_BINCODE2);
    out.push(0);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&payload);
    let check = blake3::hash(&out);
    out.extend_from_slice(&check.as_bytes()[..CHECK_LEN]);
    Ok(out)
}

/// Decodes an enveloped object of `kind`, checking magic, version and checksum.
/// Returns the value and the schema version it was written with.
pub fn decode<T: DeserializeOwned>(kind: Kind, bytes: &[u8]) -> Result<(T, u16), FormatError> {
    let what = kind.name;
    if bytes.len() < HEADER_LEN + CHECK_LEN {
        return Err(FormatError::Truncated { what });
    }
    if bytes[..4] != kind.magic {
        return Err(FormatError::BadMagic { expected: what });
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version > kind.version {
        return Err(FormatError::NewerVersion {
            what,
            found: version.into(),
            supported: kind.version.into(),
        });
    }
    let codec = bytes[6];
    let flags = bytes[7];
    let len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
    if len > MAX_PAYLOAD || bytes.len() != HEADER_LEN + len + CHECK_LEN {
        return Err(FormatError::Truncated { what });
    }
    let body_end = HEADER_LEN + len;
    let check = blake3::hash(&bytes[..body_end]);
    if check.as_bytes()[..CHECK_LEN] != bytes[body_end..] {
        return Err(FormatError::Checksum { what });
    }
    if codec != CODEC_BINCODE2 || flags != 0 {
        return Err(FormatError::NewerVersion {
            what,
            found: u32::from(codec) << 8 | u32::from(flags),
            supported: u32::from(CODEC_BINCODE2) << 8,
        });
    }
    let (value, used) = bincode::serde::decode_from_slice(&bytes[HEADER_LEN..body_end], config())
        .map_err(|e| FormatError::Decode {
        what,
        detail: e.to_string(),
    })?;
    if used != len {
        return Err(FormatError::Decode {
            what,
            detail: format!("{} trailing payload bytes", len - used),
        });
    }
    Ok((value, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: Kind = Kind {
        magic: *b"TEST",
        version: 2,
        name: "test object",
    };

    #[test]
    fn round_trip_and_every_corruption_is_caught() {
        let value = (7u64, String::from("x"), vec![1u8, 2, 3]);
        let bytes = encode(K, &value).unwrap();
        let (back, v): ((u64, String, Vec<u8>), u16) = decode(K, &bytes).unwrap();
        assert_eq!(back, value);
        assert_eq!(v, 2);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(
                decode::<(u64, String, Vec<u8>)>(K, &bad).is_err(),
                "flip at {i}"
            );
        }
        for n in 0..bytes.len() {
            assert!(decode::<(u64, String, Vec<u8>)>(K, &bytes[..n]).is_err());
        }
    }

    #[test]
    fn newer_version_is_refused_by_name() {
        let newer = Kind { version: 3, ..K };
        let bytes = encode(newer, &1u8).unwrap();
        let err = decode::<u8>(K, &bytes).unwrap_err();
        assert!(
            matches!(err, FormatError::NewerVersion { found: 3, .. }),
            "{err}"
        );
    }
}
