//! Identifiers: content hashes for chunks and packs, timestamps for snapshots.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::FormatError;

macro_rules! hash_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The id of `bytes` under the plain blake3 scheme.
            pub fn of(bytes: &[u8]) -> Self {
                Self(blake3_of(bytes))
            }

            /// Lower-case hex, 64 characters.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first 4 bytes as hex, for messages.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl FromStr for $name {
            type Err = FormatError;
            fn from_str(s: &str) -> Result<Self, FormatError> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out).map_err(|e| FormatError::Invalid {
                    what: $what,
                    detail: format!("{s:?}: {e}"),
                })?;
                Ok(Self(out))
            }
        }
    };
}

hash_id!(
    /// A chunk's id: blake3 of its uncompressed bytes (scheme `blake3`;
    /// the config's `chunk_id_scheme` leaves room for a keyed hash).
    ChunkId,
    "chunk id"
);
impl ChunkId {
    /// The id of `len` zero bytes when `len` is a zero-page length (a
    /// power of two from 4 KiB to 256 KiB), computed once per length.
    pub fn of_zeros(len: u64) -> Option<ChunkId> {
        let slot = zero_page_slot(usize::try_from(len).ok()?)?;
        Some(ChunkId(*ZERO_PAGE_IDS[slot].get_or_init(|| {
            *blake3::hash(&vec![0u8; 1 << (slot + 12)]).as_bytes()
        })))
    }
}

/// Ids of all-zero pages, by log2 of their length minus 12.
static ZERO_PAGE_IDS: [std::sync::OnceLock<[u8; 32]>; 7] =
    [const { std::sync::OnceLock::new() }; 7];

/// The [`ZERO_PAGE_IDS`] slot of a zero-page length.
fn zero_page_slot(len: usize) -> Option<usize> {
    (len.is_power_of_two() && (4096..=256 << 10).contains(&len))
        .then(|| (len.trailing_zeros() - 12) as usize)
}

/// blake3 of `bytes`. An all-zero page (a quarter of a HitKeep data path's
/// bytes are such DuckDB pages) takes its hash from [`ZERO_PAGE_IDS`]: a
/// zero check costs a fraction of hashing.
fn blake3_of(bytes: &[u8]) -> [u8; 32] {
    if zero_page_slot(bytes.len()).is_some() && is_zero(bytes) {
        if let Some(id) = ChunkId::of_zeros(bytes.len() as u64) {
            return id.0;
        }
    }
    *blake3::hash(bytes).as_bytes()
}

/// Whether `bytes` are all zero (64 bytes at a time, which compiles to
/// vector ORs; a page of data usually fails on its first block).
pub fn is_zero(bytes: &[u8]) -> bool {
    let blocks = bytes.chunks_exact(64);
    let tail = blocks.remainder();
    blocks
        .into_iter()
        .all(|b| b.iter().fold(0u8, |acc, &x| acc | x) == 0)
        && tail.iter().all(|&x| x == 0)
}

hash_id!(
    /// A pack's id: blake3 of the whole pack file; also its file name.
    PackId,
    "pack id"
);

/// A snapshot's id: its UTC start time to the second, written the way
/// HitKeep names its backups, `2026-03-08T120000Z`. Ids sort by time.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SnapshotId(pub i64);

const SNAPSHOT_ID_FORMAT: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour][minute][second]Z");

impl SnapshotId {
    /// The id for a unix time in seconds.
    pub fn from_unix(secs: i64) -> Self {
        Self(secs)
    }

    /// Seconds since the unix epoch.
    pub fn unix(&self) -> i64 {
        self.0
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match time::OffsetDateTime::from_unix_timestamp(self.0) {
            Ok(t) => match t.format(SNAPSHOT_ID_FORMAT) {
                Ok(s) => f.write_str(&s),
                Err(_) => write!(f, "@{}", self.0),
            },
            Err(_) => write!(f, "@{}", self.0),
        }
    }
}

impl fmt::Debug for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SnapshotId({self})")
    }
}

impl FromStr for SnapshotId {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, FormatError> {
        let bad = || FormatError::Invalid {
            what: "snapshot id",
            detail: format!("{s:?} is not of the form 2026-03-08T120000Z"),
        };
        if s.len() != 18 || !s.is_ascii() {
            return Err(bad());
        }
        let t = time::PrimitiveDateTime::parse(s, SNAPSHOT_ID_FORMAT).map_err(|_| bad())?;
        Ok(Self(t.assume_utc().unix_timestamp()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_id_round_trips_hitkeep_form() {
        let id: SnapshotId = "2026-03-08T120000Z".parse().unwrap();
        assert_eq!(id.to_string(), "2026-03-08T120000Z");
        assert_eq!(id.unix(), 1_772_971_200);
        assert!("2026-03-08T12:00:00Z".parse::<SnapshotId>().is_err());
        assert!("latest".parse::<SnapshotId>().is_err());
        assert!("2026-13-08T120000Z".parse::<SnapshotId>().is_err());
    }

    #[test]
    fn zero_pages_have_their_plain_blake3_id() {
        for shift in 12..=18 {
            let zeros = vec![0u8; 1 << shift];
            let plain = ChunkId(*blake3::hash(&zeros).as_bytes());
            assert_eq!(ChunkId::of(&zeros), plain, "{} zero bytes", zeros.len());
            assert_eq!(ChunkId::of_zeros(zeros.len() as u64), Some(plain));
            let mut one = zeros.clone();
            *one.last_mut().unwrap() = 1;
            assert_eq!(ChunkId::of(&one), ChunkId(*blake3::hash(&one).as_bytes()));
        }
        for len in [0u64, 1, 4095, 4097, 12 << 10, 512 << 10] {
            assert_eq!(ChunkId::of_zeros(len), None, "{len} is no zero-page length");
            let zeros = vec![0u8; len as usize];
            assert_eq!(
                ChunkId::of(&zeros),
                ChunkId(*blake3::hash(&zeros).as_bytes())
            );
        }
    }

    #[test]
    fn chunk_id_hex_round_trips() {
        let id = ChunkId::of(b"hello");
        assert_eq!(id.to_hex().parse::<ChunkId>().unwrap(), id);
        assert!("zz".parse::<ChunkId>().is_err());
    }
}
