//! The store config, as the engine meets it: a newer format is refused
//! before anything is touched, and any chunking parameters the config
//! accepts must be usable by the chunkers (or be refused when the store is
//! opened) — never a panic or a store that cannot snapshot some files.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use cairn_store::format::{ChunkingParams, FormatError, StoreConfig, FORMAT_VERSION};
use cairn_store::restore::{self, RestoreOptions};
use cairn_store::snapshot::{self, SnapshotOptions, SourceSpec};
use cairn_store::{NoProgress, Store, StoreError};

/// Every file under `dir`, by path, with its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push((
                p.strip_prefix(dir).unwrap().to_owned(),
                fs::read(&p).unwrap(),
            ));
        }
    }
    out.sort();
    out
}

fn rewrite_config(store: &Path, f: impl FnOnce(&mut StoreConfig)) {
    let path = store.join("config");
    let mut cfg = StoreConfig::decode(&fs::read(&path).unwrap()).unwrap();
    f(&mut cfg);
    fs::write(&path, cfg.encode().unwrap()).unwrap();
}

#[test]
fn newer_format_is_refused_by_open_and_nothing_is_touched() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    Store::init(&store).unwrap();
    rewrite_config(&store, |c| c.format_version = FORMAT_VERSION + 1);
    fs::remove_dir_all(store.join("index")).unwrap();
    fs::remove_dir_all(store.join("tmp")).unwrap();
    let before = files(&store);
    let err = Store::open(&store).err().expect("newer store opened");
    match &err {
        StoreError::Format {
            what,
            cause: FormatError::NewerVersion {
                found, supported, ..
            },
        } => {
            assert!(what.contains("config"), "{err}");
            assert_eq!(*found, FORMAT_VERSION + 1);
            assert_eq!(*supported, FORMAT_VERSION);
        }
        e => panic!("expected a NewerVersion format error, got {e:?}"),
    }
    assert!(err.to_string().contains("upgrade cairn"), "{err}");
    assert_eq!(files(&store), before);
    assert!(!store.join("index").exists(), "index created");
    assert!(!store.join("tmp").exists(), "tmp created");
}

/// Parameters that `ChunkingParams::validate` (and so `StoreConfig::decode`)
/// accepts, at the edges of what it allows.
/// A named case: parameters and the files to snapshot with them.
type EdgeCase = (&'static str, ChunkingParams, Vec<(&'static str, Vec<u8>)>);

fn edge_params() -> Vec<EdgeCase> {
    let noise = |n: usize| {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect::<Vec<u8>>()
    };
    let base = ChunkingParams::default();
    vec![
        (
            "tiny FastCDC sizes (avg 128 B, max 512 B)",
            ChunkingParams {
                cdc_min: 64,
                cdc_avg: 128,
                cdc_max: 512,
                whole_file_max: 1024,
                ..base.clone()
            },
            vec![("f", noise(20_000))],
        ),
        (
            "average above 4 MiB (8 MiB)",
            ChunkingParams {
                cdc_min: 1 << 20,
                cdc_avg: 8 << 20,
                cdc_max: 16 << 20,
                ..base.clone()
            },
            vec![("f", noise(100_000))],
        ),
        (
            "smallest sizes FastCDC accepts",
            ChunkingParams {
                cdc_min: 64,
                cdc_avg: 256,
                cdc_max: 1024,
                ..base.clone()
            },
            vec![("f", noise(100_000))],
        ),
        (
            "largest maximum (4 MiB) with a file of zeros larger than a read window",
            ChunkingParams {
                cdc_min: 64 * 1024,
                cdc_avg: 1 << 20,
                cdc_max: 4 << 20,
                ..base.clone()
            },
            vec![("zeros", vec![0u8; 20 << 20])],
        ),
        (
            "maximum of 16 MiB with a file of zeros larger than a read window",
            ChunkingParams {
                cdc_min: 64 * 1024,
                cdc_avg: 1 << 20,
                cdc_max: 16 << 20,
                ..base
            },
            vec![("zeros", vec![0u8; 20 << 20])],
        ),
    ]
}

/// A store whose config holds such parameters either refuses to open, or
/// snapshots and restores — it must not panic or fail on ordinary files.
#[test]
fn every_accepted_chunking_config_is_usable() {
    let mut problems = Vec::new();
    let mut used = 0;
    for (case, params, contents) in edge_params() {
        if params.validate().is_err() {
            // Refused by validation: a store cannot be created with it.
            let tmp = tempfile::tempdir().unwrap();
            let refused = Store::init_with(&tmp.path().join("s"), |c| c.chunking = params.clone());
            if refused.is_ok() {
                problems.push(format!("{case}: init accepted parameters validate refuses"));
            }
            continue;
        }
        used += 1;
        let tmp = tempfile::tempdir().unwrap();
        let store_path = tmp.path().join("store");
        Store::init(&store_path).unwrap();
        rewrite_config(&store_path, |c| c.chunking = params.clone());
        let store = match Store::open(&store_path) {
            Ok(s) => s,
            Err(StoreError::Format { .. }) => continue, // refused cleanly: fine
            Err(e) => {
                problems.push(format!("{case}: open failed oddly: {e}"));
                continue;
            }
        };
        let data = tmp.path().join("data");
        fs::create_dir(&data).unwrap();
        for (name, bytes) in &contents {
            fs::write(data.join(name), bytes).unwrap();
        }
        let opts = SnapshotOptions {
            sources: vec![SourceSpec {
                label: "data".into(),
                path: data.clone(),
            }],
            ..Default::default()
        };
        let taken = catch_unwind(AssertUnwindSafe(|| {
            snapshot::snapshot(&store, &opts, &NoProgress)
        }));
        let report = match taken {
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                problems.push(format!("{case}: snapshot panicked: {msg}"));
                continue;
            }
            Ok(Err(e)) => {
                problems.push(format!("{case}: snapshot failed: {e}"));
                continue;
            }
            Ok(Ok(r)) => r,
        };
        let target = tmp.path().join("t");
        let r = restore::restore(
            &store,
            &RestoreOptions {
                snapshot: report.manifest.id,
                target: target.clone(),
                overwrite: false,
                durability: restore::Durability::Synced,
            },
            &NoProgress,
        );
        match r {
            Ok(r) if r.failed.is_empty() && files(&target) == files(&data) => {}
            Ok(r) => problems.push(format!("{case}: restore differs: {:?}", r.failed)),
            Err(e) => problems.push(format!("{case}: restore failed: {e}")),
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(
        used >= 2,
        "the limit cases must be accepted and used ({used})"
    );
}
