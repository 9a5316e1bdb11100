//! The store config: the one file that says how a store is laid out.

use serde::{Deserialize, Serialize};

use crate::envelope::{self, Kind};
use crate::FormatError;

/// Version of the store format as a whole (config, packs, manifests, nodes).
/// A store with a higher version is refused.
pub const FORMAT_VERSION: u32 = 1;

const KIND: Kind = Kind {
    magic: *b"CCFG",
    version: 1,
    name: "store config",
};

/// How file contents are cut into chunks. Part of the format: changing any
/// of these changes chunk ids, so they are fixed when the store is created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkingParams {
    /// FastCDC (2020, normalization level 1) minimum chunk size.
    pub cdc_min: u32,
    /// FastCDC average chunk size.
    pub cdc_avg: u32,
    /// FastCDC maximum chunk size.
    pub cdc_max: u32,
    /// Chunk size inside DuckDB blocks (a power of two dividing the block size).
    pub duckdb_chunk: u32,
    /// Files at most this large are stored as one chunk (whole-file dedup).
    pub whole_file_max: u32,
}

impl Default for ChunkingParams {
    fn default() -> Self {
        Self {
            cdc_min: 16 * 1024,
            cdc_avg: 64 * 1024,
            cdc_max: 256 * 1024,
            duckdb_chunk: 4 * 1024,
            whole_file_max: 16 * 1024,
        }
    }
}

impl ChunkingParams {
    /// Checks the values a chunker can work with.
    pub fn validate(&self) -> Result<(), FormatError> {
        let bad = |detail: String| FormatError::Invalid {
            what: "chunking parameters",
            detail,
        };
        // FastCDC 3.2.1's own limits (it asserts on them), and a maximum
        // chunk of at most 4 MiB: ingest reads 8 MiB windows and needs at
        // least two maximum chunks in one.
        let ok = (64..=1 << 20).contains(&self.cdc_min)
            && (256..=4 << 20).contains(&self.cdc_avg)
            && (1024..=4 << 20).contains(&self.cdc_max)
            && self.cdc_min <= self.cdc_avg
            && self.cdc_avg <= self.cdc_max;
        if !ok {
            return Err(bad(format!(
                "FastCDC sizes {}/{}/{} are out of order or range",
                self.cdc_min, self.cdc_avg, self.cdc_max
            )));
        }
        if !self.duckdb_chunk.is_power_of_two() || !(4096..=262_144).contains(&self.duckdb_chunk) {
            return Err(bad(format!(
                "DuckDB chunk size {} is not a power of two from 4 KiB to 256 KiB",
                self.duckdb_chunk
            )));
        }
        if self.whole_file_max > 16 << 20 {
            return Err(bad("whole-file chunk limit above 16 MiB".into()));
        }
        Ok(())
    }
}

/// The fastest zstd level a store may name: zstd's negative levels leave
/// literals uncompressed, trading ratio for speed.
pub const MIN_ZSTD_LEVEL: i32 = -7;

/// How chunk frames are compressed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compression {
    /// zstd level for new frames (default 1: on the 620 MiB benchmark data
    /// path level 3 made packs 2.8 % smaller and the first snapshot about
    /// 15 % slower; `cairn init --compression-level` chooses another).
    pub zstd_level: i32,
    /// Raw bytes grouped into one compressed frame (chunks are not split).
    pub frame_target: u32,
}

impl Default for Compression {
    fn default() -> Self {
        Self {
            zstd_level: 1,
            frame_target: 64 * 1024,
        }
    }
}

/// The store config, `STORE/config`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreConfig {
    /// Store format version ([`FORMAT_VERSION`] when created).
    pub format_version: u32,
    /// Random id of this store; replicas keep it.
    pub store_id: [u8; 16],
    /// How chunk ids are computed: `blake3` now; a keyed scheme later.
    pub chunk_id_scheme: String,
    /// How pack frames are sealed: `none` now; encryption later.
    pub pack_sealing: String,
    /// Chunking parameters.
    pub chunking: ChunkingParams,
    /// Compression parameters.
    pub compression: Compression,
    /// Target pack size in bytes.
    pub pack_target: u64,
}

impl StoreConfig {
    /// A new config with default parameters and the given random id.
    pub fn new(store_id: [u8; 16]) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            store_id,
            chunk_id_scheme: "blake3".into(),
            pack_sealing: "none".into(),
            chunking: ChunkingParams::default(),
            compression: Compression::default(),
            pack_target: 32 << 20,
        }
    }

    /// Encodes the config file.
    pub fn encode(&self) -> Result<Vec<u8>, FormatError> {
        envelope::encode(KIND, self)
    }

    /// Decodes and validates a config file; refuses newer formats and
    /// schemes this build cannot read.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let (cfg, _): (Self, _) = envelope::decode(KIND, bytes)?;
        if cfg.format_version > FORMAT_VERSION {
            return Err(FormatError::NewerVersion {
                what: "store",
                found: cfg.format_version,
                supported: FORMAT_VERSION,
            });
        }
        if cfg.chunk_id_scheme != "blake3" || cfg.pack_sealing != "none" {
            return Err(FormatError::NewerVersion {
                what: "store (chunk id scheme or pack sealing)",
                found: cfg.format_version,
                supported: FORMAT_VERSION,
            });
        }
        cfg.chunking.validate()?;
        if !(MIN_ZSTD_LEVEL..=22).contains(&cfg.compression.zstd_level)
            || cfg.compression.zstd_level == 0
            || cfg.compression.frame_target > 16 << 20
            || !(1 << 20..=1 << 32).contains(&cfg.pack_target)
        {
            return Err(FormatError::Invalid {
                what: "store config",
                detail: "compression or pack size out of range".into(),
            });
        }
        Ok(cfg)
    }

    /// The store id as hex.
    pub fn store_id_hex(&self) -> String {
        hex::encode(self.store_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_and_newer_is_refused() {
        let cfg = StoreConfig::new([7; 16]);
        assert_eq!(StoreConfig::decode(&cfg.encode().unwrap()).unwrap(), cfg);
        let newer = StoreConfig {
            format_version: FORMAT_VERSION + 1,
            ..cfg
        };
        let err = StoreConfig::decode(&newer.encode().unwrap()).unwrap_err();
        assert!(err.to_string().contains("upgrade cairn"), "{err}");
    }
}
