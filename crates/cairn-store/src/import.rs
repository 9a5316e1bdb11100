//! HitKeep's built-in backups: importing them as snapshots
//! (`cairn import-hitkeep-backups`) and writing one back in their layout
//! (`cairn restore --as-hitkeep-backup`).
//!
//! HitKeep exports every database each hour with DuckDB's `EXPORT
//! DATABASE ... (FORMAT PARQUET)` into `{backup}/shared/{ts}/` (the
//! control plane) and `{backup}/tenants/{uuid}/{ts}/`. One backup run, all
//! directories of one `{ts}`, becomes one snapshot whose id is that `{ts}`:
//! one root `backup` (the backup path) holding only `shared/{ts}/` and
//! `tenants/{uuid}/{ts}/`, so the snapshot's tree is the backup layout
//! (and a tenant's files lie under `tenants/{uuid}/`, where purging a
//! tenant looks), and the manifest labels `import=hitkeep-backup`,
//! `hitkeep_backup_ts={ts}` and `hitkeep_backup_from={backup}`. Chunks are
//! shared with every other snapshot in the store, so files an hour did
//! not change are stored once.
//!
//! [`plan`] lists the runs and decides what to skip (already imported, id
//! taken, incomplete, too recent); [`execute`] imports the rest, oldest
//! first. [`restore_as_backup`] writes one back.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use cairn_format::{EntryKind, Manifest, SnapshotId, TreeEntry};

use crate::delta::DeltaBase;
use crate::error::{IoContext, Result, StoreError};
use crate::reader::{ChunkReader, FrameCache};
use crate::restore::{self, RestorePlan, RestoreReport};
use crate::snapshot::{self, Progress, SnapshotOptions, SnapshotReport, SourceSpec};
use crate::store::Store;
use crate::tree::load_tree;

pub use cairn_format::manifest::{IMPORT_HITKEEP_BACKUP, LABEL_IMPORT};
/// Manifest label: the backup run's `{ts}` directory name.
pub const LABEL_BACKUP_TS: &str = "hitkeep_backup_ts";
/// Manifest label: the backup path it was imported from.
pub const LABEL_BACKUP_FROM: &str = "hitkeep_backup_from";
/// Root label of an imported backup run: the backup path.
pub const ROOT_BACKUP: &str = "backup";
/// The file DuckDB writes last into an export; without it the export is
/// incomplete (DuckDB writes the table files, then `schema.sql` and
/// `load.sql`).
pub const EXPORT_COMPLETE_MARKER: &str = "load.sql";

/// Whether a snapshot is an import of HitKeep's built-in backups.
pub fn is_backup_import(m: &Manifest) -> bool {
    m.is_backup_import()
}

/// What to import.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// HitKeep's backup path (`HITKEEP_BACKUP_PATH`).
    pub from: PathBuf,
    /// Leave out runs with a file modified less than this long ago: HitKeep
    /// may still be writing them (its exports carry no completion record).
    pub min_age: Duration,
}

/// One backup run: every export directory of one `{ts}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupRun {
    /// `{ts}` (kept in the snapshot's `hitkeep_backup_ts` label).
    pub ts: SnapshotId,
    /// The snapshot id: `{ts}`, or the next free second when a snapshot
    /// of the data path was taken in that very second.
    pub id: SnapshotId,
    /// `shared/{ts}`, when present.
    pub shared: Option<PathBuf>,
    /// `(uuid, tenants/{uuid}/{ts})`, sorted by uuid.
    pub tenants: Vec<(String, PathBuf)>,
}

impl BackupRun {
    fn dirs(&self) -> impl Iterator<Item = &PathBuf> {
        self.shared
            .iter()
            .chain(self.tenants.iter().map(|(_, p)| p))
    }
}

/// What an import will do.
#[derive(Clone, Debug, Default)]
pub struct ImportPlan {
    /// The backup path.
    pub from: PathBuf,
    /// Runs to import, oldest first.
    pub runs: Vec<BackupRun>,
    /// Runs left out: `{ts}` and why.
    pub skipped: Vec<(String, String)>,
}

/// What an import did.
#[derive(Clone, Debug, Default)]
pub struct ImportReport {
    /// One snapshot per imported run.
    pub imported: Vec<SnapshotReport>,
}

fn ts_dirs(dir: &Path) -> Result<Vec<(SnapshotId, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).at(dir),
    };
    for e in entries {
        let e = e.at(dir)?;
        let Some(name) = e.file_name().to_str().map(String::from) else {
            continue;
        };
        let Ok(ts) = name.parse::<SnapshotId>() else {
            continue;
        };
        // Only the canonical spelling: the layout is written back from it.
        if ts.to_string() == name && e.file_type().at(e.path())?.is_dir() {
            out.push((ts, e.path()));
        }
    }
    Ok(out)
}

/// The newest modification time of anything in `dir` (one level).
fn newest_mtime(dir: &Path) -> Result<SystemTime> {
    let mut newest = fs::metadata(dir).at(dir)?.modified().at(dir)?;
    for e in fs::read_dir(dir).at(dir)? {
        let e = e.at(dir)?;
        let m = e.metadata().at(e.path())?.modified().at(e.path())?;
        newest = newest.max(m);
    }
    Ok(newest)
}

/// Lists the backup runs under `opts.from` and decides which to import.
pub fn plan(store: &Store, opts: &ImportOptions) -> Result<ImportPlan> {
    store.files().require_local("import-hitkeep-backups")?;
    if opts.from.to_string_lossy().contains("://") {
        return Err(StoreError::Usage(format!(
            "backup path {} is object storage; cairn imports backups from a local directory (sync it down first)",
            opts.from.display()
        )));
    }
    let from = std::path::absolute(&opts.from).at(&opts.from)?;
    // Canonical, as the walk sees it (the run directories are matched
    // against the walked paths).
    let from = fs::canonicalize(&from).unwrap_or(from);
    if !from.is_dir() {
        return Err(StoreError::Usage(format!(
            "backup path {} is not a directory",
            from.display()
        )));
    }
    if !from.join("shared").is_dir() && !from.join("tenants").is_dir() {
        return Err(StoreError::Usage(format!(
            "{} holds no HitKeep backups (no shared/ or tenants/ directory)",
            from.display()
        )));
    }
    let mut runs: BTreeMap<SnapshotId, BackupRun> = BTreeMap::new();
    for (ts, path) in ts_dirs(&from.join("shared"))? {
        entry(&mut runs, ts).shared = Some(path);
    }
    let tenants_dir = from.join("tenants");
    if tenants_dir.is_dir() {
        for e in fs::read_dir(&tenants_dir).at(&tenants_dir)? {
            let e = e.at(&tenants_dir)?;
            let Some(uuid) = e.file_name().to_str().map(String::from) else {
                continue;
            };
            if !e.file_type().at(e.path())?.is_dir() {
                continue;
            }
            for (ts, path) in ts_dirs(&e.path())? {
                entry(&mut runs, ts).tenants.push((uuid.clone(), path));
            }
        }
    }
    let snapshots = store.snapshots()?;
    let ids: BTreeSet<SnapshotId> = snapshots.iter().map(|m| m.id).collect();
    // By label, not id: a rewritten import (a tenant purged from it) has
    // another id and must not be imported again.
    let imported: BTreeSet<&str> = snapshots
        .iter()
        .filter(|m| is_backup_import(m))
        .filter_map(|m| m.labels.get(LABEL_BACKUP_TS).map(String::as_str))
        .collect();
    let now = SystemTime::now();
    let mut out = ImportPlan {
        from,
        ..ImportPlan::default()
    };
    // A run's id is its `{ts}` unless a snapshot, another run's `{ts}` or
    // an id given to an earlier run has it.
    let run_ts: BTreeSet<SnapshotId> = runs.keys().copied().collect();
    let mut given: BTreeSet<SnapshotId> = BTreeSet::new();
    for (ts, mut r) in runs {
        r.tenants.sort();
        let name = ts.to_string();
        if imported.contains(name.as_str()) {
            out.skipped.push((name, "already imported".to_string()));
            continue;
        }
        if r.shared.is_none() {
            out.skipped.push((
                name.clone(),
                format!("no control-plane export (shared/{name})"),
            ));
            continue;
        }
        if let Some(d) = r.dirs().find(|d| !d.join(EXPORT_COMPLETE_MARKER).is_file()) {
            out.skipped.push((
                name,
                format!(
                    "incomplete export: {} has no {EXPORT_COMPLETE_MARKER}",
                    d.display()
                ),
            ));
            continue;
        }
        let mut newest = SystemTime::UNIX_EPOCH;
        for d in r.dirs() {
            newest = newest.max(newest_mtime(d)?);
        }
        let age = now.duration_since(newest).unwrap_or_default();
        if age < opts.min_age {
            out.skipped.push((
                name,
                format!(
                    "written {}s ago, less than --min-age {}s: HitKeep may still be writing it",
                    age.as_secs(),
                    opts.min_age.as_secs()
                ),
            ));
            continue;
        }
        while ids.contains(&r.id) || given.contains(&r.id) || (r.id != ts && run_ts.contains(&r.id))
        {
            r.id = SnapshotId(r.id.0 + 1);
        }
        given.insert(r.id);
        out.runs.push(r);
    }
    Ok(out)
}

fn entry(runs: &mut BTreeMap<SnapshotId, BackupRun>, ts: SnapshotId) -> &mut BackupRun {
    runs.entry(ts).or_insert_with(|| BackupRun {
        ts,
        id: ts,
        shared: None,
        tenants: Vec::new(),
    })
}

/// Imports the planned runs, oldest first, one snapshot each. Stops at
/// the first failure; the runs imported before it stay.
pub fn execute(store: &Store, plan: &ImportPlan, progress: &dyn Progress) -> Result<ImportReport> {
    let mut report = ImportReport::default();
    // Imports of this backup path already in the store, by `{ts}`: each
    // run's files are stored as patches against the run before it (never
    // against another HitKeep's, whose history would then stay alive).
    let from = plan.from.display().to_string();
    let mut earlier: BTreeMap<String, Manifest> = store
        .snapshots()?
        .into_iter()
        .filter(is_backup_import)
        .filter(|m| m.labels.get(LABEL_BACKUP_FROM) == Some(&from))
        .filter_map(|m| Some((m.labels.get(LABEL_BACKUP_TS)?.clone(), m)))
        .collect();
    let reader = ChunkReader::new(store);
    for run in &plan.runs {
        let ts = run.ts.to_string();
        let delta_bases = match earlier.range(..ts.clone()).next_back() {
            // A predecessor whose tree cannot be read gives no bases: the
            // run is stored as its bytes (and `check` reports the damage).
            Some((prev_ts, prev)) => {
                delta_bases(&reader, &plan.from, run, prev_ts, prev).unwrap_or_default()
            }
            None => HashMap::new(),
        };
        let labels = BTreeMap::from([
            (LABEL_IMPORT.to_string(), IMPORT_HITKEEP_BACKUP.to_string()),
            (LABEL_BACKUP_TS.to_string(), run.ts.to_string()),
            (
                LABEL_BACKUP_FROM.to_string(),
                plan.from.display().to_string(),
            ),
        ]);
        let opts = SnapshotOptions {
            sources: vec![SourceSpec {
                label: ROOT_BACKUP.into(),
                path: plan.from.clone(),
            }],
            only: run.dirs().cloned().collect(),
            labels,
            id: Some(run.id),
            // Each run is self-contained; chunks dedup through the index.
            no_parent: true,
            delta_bases,
            ..SnapshotOptions::default()
        };
        let done = snapshot::snapshot(store, &opts, progress)?;
        earlier.insert(ts, done.manifest.clone());
        report.imported.push(done);
    }
    Ok(report)
}

/// Delta bases for `run`'s files: each export file's namesake in the
/// same export directory of the run `prev` (`{prev_ts}`), with its copy
/// under the backup path as the local base.
fn delta_bases(
    reader: &ChunkReader<'_>,
    from: &Path,
    run: &BackupRun,
    prev_ts: &str,
    prev: &Manifest,
) -> Result<HashMap<PathBuf, DeltaBase>> {
    let mut out = HashMap::new();
    let Some(root) = prev.roots.iter().find(|r| r.label == ROOT_BACKUP) else {
        return Ok(out);
    };
    let Some(tree) = root.tree else {
        return Ok(out);
    };
    let mut cache = FrameCache::default();
    let context = || format!("snapshot {}", prev.id);
    for dir in run.dirs() {
        // `shared/{ts}` or `tenants/{uuid}/{ts}`: the same place in `prev`.
        let Ok(rel) = dir.strip_prefix(from) else {
            continue;
        };
        let mut prev_rel: Vec<String> = rel
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        let Some(last) = prev_rel.last_mut() else {
            continue;
        };
        *last = prev_ts.to_string();
        let mut node = tree;
        let mut found = true;
        for name in &prev_rel {
            let t = load_tree(reader, &node, &mut cache, &context)?;
            match t.entries.iter().find(|e| e.name == name.as_bytes()) {
                Some(TreeEntry {
                    kind: EntryKind::Dir(id),
                    ..
                }) => node = *id,
                _ => {
                    found = false;
                    break;
                }
            }
        }
        if !found {
            continue;
        }
        let prev_dir = from.join(prev_rel.iter().collect::<PathBuf>());
        for e in load_tree(reader, &node, &mut cache, &context)?.entries {
            let Ok(name) = e
                .safe_name()
                .map(|n| std::ffi::OsStr::from_bytes(n).to_owned())
            else {
                continue;
            };
            let EntryKind::File(content) = e.kind else {
                continue;
            };
            out.insert(
                dir.join(&name),
                DeltaBase {
                    content,
                    local: Some(prev_dir.join(&name)),
                },
            );
        }
    }
    Ok(out)
}

/// One export directory of a backup run, relative to the backup path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportDir {
    /// The tenant, or `None` for the control plane (`shared/{ts}`).
    pub tenant: Option<String>,
    /// `shared/{ts}` or `tenants/{uuid}/{ts}`.
    pub rel: PathBuf,
}

/// The export directories an imported snapshot's restore plan holds, or
/// an error when the snapshot is not an import of HitKeep backups.
pub fn export_dirs(m: &Manifest, plan: &RestorePlan) -> Result<Vec<ExportDir>> {
    if !is_backup_import(m) || m.roots.len() != 1 {
        return Err(StoreError::Usage(format!(
            "snapshot {} is not an import of HitKeep backups; --as-hitkeep-backup restores only those",
            m.id
        )));
    }
    // The run's own `{ts}`: a rewritten import (tenant purged) has
    // another snapshot id.
    let ts = m
        .labels
        .get(LABEL_BACKUP_TS)
        .cloned()
        .unwrap_or_else(|| m.id.to_string());
    let mut out = Vec::new();
    for (dir, _) in &plan.dirs {
        let parts: Vec<&str> = dir
            .components()
            .map(|c| c.as_os_str().to_str().unwrap_or(""))
            .collect();
        match parts.as_slice() {
            ["shared", t] if *t == ts => out.push(ExportDir {
                tenant: None,
                rel: dir.clone(),
            }),
            ["tenants", u, t] if *t == ts => out.push(ExportDir {
                tenant: Some((*u).to_string()),
                rel: dir.clone(),
            }),
            _ => {}
        }
    }
    Ok(out)
}

/// Writes an imported snapshot back as `target/shared/{ts}/` and
/// `target/tenants/{uuid}/{ts}/`, for `hitkeep recover restore-backup
/// -from target -snapshot {ts}`. Other content of `target` (other runs)
/// is left alone; an export directory that exists already is refused
/// unless `overwrite`.
pub fn restore_as_backup(
    store: &Store,
    snapshot: SnapshotId,
    target: &Path,
    overwrite: bool,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    let m = store.load_manifest(snapshot)?;
    if !is_backup_import(&m) {
        // Refused before the tree is read.
        export_dirs(&m, &RestorePlan::default())?;
    }
    let plan = restore::plan(store, &m)?;
    let exports = export_dirs(&m, &plan)?;
    store.refuse_inside("restore target", target)?;
    match fs::symlink_metadata(target) {
        Ok(meta) if !meta.is_dir() => {
            return Err(StoreError::Usage(format!(
                "restore target {} exists and is not a directory",
                target.display()
            )))
        }
        Ok(_) => {}
        Err(_) => fs::create_dir_all(target).at(target)?,
    }
    if !overwrite {
        if let Some(e) = exports.iter().find(|e| target.join(&e.rel).exists()) {
            return Err(StoreError::TargetNotEmpty {
                path: target.join(&e.rel),
            });
        }
    }
    restore::execute(store, &plan, target, restore::Durability::Synced, progress)
}
