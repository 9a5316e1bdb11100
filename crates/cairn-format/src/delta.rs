//! The patch stream of a [`ContentLayout::Delta`](crate::ContentLayout)
//! file: one zstd frame whose window starts with the base file's bytes
//! (zstd's "reference prefix", what `zstd --patch-from=BASE` writes), so
//! the file's stretches that match its base cost a few bytes each.
//!
//! The base and the file together must fit in the window, so both are
//! capped at [`MAX_DELTA_FILE`]; larger files are chunked as usual.

use zstd::zstd_safe::{self, CParameter, DParameter};

use crate::FormatError;

/// Largest base or file a patch is made for (64 MiB): base and file
/// together fit the 128 MiB window every zstd decoder accepts by default.
pub const MAX_DELTA_FILE: u64 = 64 << 20;

/// zstd level of a patch. On 24 hourly HitKeep exports, levels 3, 9 and 19
/// gave patches of 0.041, 0.040 and 0.039 of the exports' bytes.
const LEVEL: i32 = 3;

/// Window log that holds `base` and `target` both (the largest window a
/// decoder allows by default is 2^27).
fn window_log(base: usize, target: usize) -> u32 {
    let need = (base + target).max(1 << 10) as u64;
    (64 - (need - 1).leading_zeros()).clamp(10, 27)
}

fn failed(what: &'static str, code: usize) -> FormatError {
    FormatError::Compression {
        what,
        detail: zstd_safe::get_error_name(code).to_string(),
    }
}

/// The patch that rebuilds `target` from `base`.
pub fn encode_patch(base: &[u8], target: &[u8]) -> Result<Vec<u8>, FormatError> {
    for (what, len) in [("delta base", base.len()), ("delta target", target.len())] {
        if len as u64 > MAX_DELTA_FILE {
            return Err(FormatError::Invalid {
                what,
                detail: format!("{len} bytes exceed the {MAX_DELTA_FILE}-byte delta limit"),
            });
        }
    }
    let err = |code| failed("delta patch", code);
    let mut cctx = zstd_safe::CCtx::try_create().ok_or_else(|| FormatError::Compression {
        what: "delta patch",
        detail: "out of memory for a zstd context".into(),
    })?;
    cctx.set_parameter(CParameter::CompressionLevel(LEVEL))
        .map_err(err)?;
    cctx.set_parameter(CParameter::WindowLog(window_log(base.len(), target.len())))
        .map_err(err)?;
    cctx.set_parameter(CParameter::EnableLongDistanceMatching(true))
        .map_err(err)?;
    cctx.set_parameter(CParameter::ContentSizeFlag(true))
        .map_err(err)?;
    cctx.set_parameter(CParameter::ChecksumFlag(false))
        .map_err(err)?;
    cctx.ref_prefix(base).map_err(err)?;
    let mut out = Vec::with_capacity(zstd_safe::compress_bound(target.len()));
    cctx.compress2(&mut out, target).map_err(err)?;
    Ok(out)
}

/// Rebuilds the file of `size` bytes that `patch` makes from `base`.
/// Fails (never panics) on a patch that is damaged, is for another base,
/// or does not give exactly `size` bytes; the caller still checks the
/// result's hash.
pub fn apply_patch(base: &[u8], patch: &[u8], size: u64) -> Result<Vec<u8>, FormatError> {
    if size > MAX_DELTA_FILE || base.len() as u64 > MAX_DELTA_FILE {
        return Err(FormatError::Invalid {
            what: "delta patch",
            detail: format!(
                "a file of {size} bytes on a base of {} bytes is past the delta limit",
                base.len()
            ),
        });
    }
    match zstd_safe::get_frame_content_size(patch) {
        Ok(Some(n)) if n == size => {}
        Ok(found) => {
            return Err(FormatError::Invalid {
                what: "delta patch",
                detail: format!("it makes {found:?} bytes, the file has {size}"),
            })
        }
        Err(_) => {
            return Err(FormatError::Invalid {
                what: "delta patch",
                detail: "not a zstd frame".into(),
            })
        }
    }
    let err = |code| failed("delta patch", code);
    let mut dctx = zstd_safe::DCtx::try_create().ok_or_else(|| FormatError::Compression {
        what: "delta patch",
        detail: "out of memory for a zstd context".into(),
    })?;
    dctx.set_parameter(DParameter::WindowLogMax(27))
        .map_err(err)?;
    dctx.ref_prefix(base).map_err(err)?;
    let mut out = Vec::with_capacity(size as usize);
    let n = dctx.decompress(&mut out, patch).map_err(err)?;
    if n as u64 != size {
        return Err(FormatError::Invalid {
            what: "delta patch",
            detail: format!("it made {n} bytes, the file has {size}"),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn a_patch_rebuilds_the_file_and_is_small_when_it_is_like_its_base() {
        let base = bytes(1, 3 << 20);
        let mut target = base.clone();
        target[100..200].copy_from_slice(&bytes(2, 100));
        target.extend_from_slice(&bytes(3, 5000));
        let patch = encode_patch(&base, &target).unwrap();
        // 5,100 new random bytes in 3 MiB: the patch is the new bytes and a
        // few bytes a 128 KiB block.
        assert!(patch.len() < 16_000, "patch of {} bytes", patch.len());
        assert_eq!(
            apply_patch(&base, &patch, target.len() as u64).unwrap(),
            target
        );
        // Empty base, empty target.
        for (b, t) in [(&[][..], &target[..10]), (&base[..10], &[][..])] {
            let p = encode_patch(b, t).unwrap();
            assert_eq!(apply_patch(b, &p, t.len() as u64).unwrap(), t);
        }
    }

    #[test]
    fn a_wrong_base_size_or_damaged_patch_is_an_error() {
        let base = bytes(1, 1 << 20);
        let mut target = base.clone();
        target[5000..5100].fill(7);
        let patch = encode_patch(&base, &target).unwrap();
        let n = target.len() as u64;
        assert!(apply_patch(&base, &patch, n + 1).is_err());
        assert!(apply_patch(&base, &patch[..patch.len() / 2], n).is_err());
        assert!(apply_patch(&base, b"not a patch at all", n).is_err());
        // Another base of the same size gives other bytes or fails, never
        // the target: the caller's hash check is what catches it.
        let other = bytes(9, 1 << 20);
        if let Ok(out) = apply_patch(&other, &patch, n) {
            assert_ne!(out, target);
        }
        let big = vec![0u8; MAX_DELTA_FILE as usize + 1];
        assert!(encode_patch(&big, &target).is_err());
        assert!(apply_patch(&base, &patch, MAX_DELTA_FILE + 1).is_err());
    }
}
