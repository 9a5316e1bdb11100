//! Restore drills (`cairn drill`): restore a snapshot into a disposable
//! directory, check offline every step of HitKeep's recovery runbook that
//! can be checked without a running HitKeep, optionally run an external
//! check per database, and keep a record of it in the store.
//!
//! A drill runs in three phases so the store lock is held only while the
//! store is read or written: [`prepare`] (with the store open: resolve the
//! snapshot, plan and run the restore), [`verify`] (no store: the checks,
//! the external command, removing the directory), [`save`] (with the store
//! open again: write the record atomically under `STORE/drills/`).
//!
//! Steps, by name (the record keeps each one's status and problems):
//! `restore` (every chunk and file verified as written), `file-hashes`
//! (every restored file read back and hashed), `duckdb-structure`,
//! `parquet-structure`, `control-plane`, `tenants`, `archives` and, when
//! asked for, `validate-cmd`.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, FileExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use cairn_chunk::duckdb_check;
use cairn_format::{ArchiveLocation, Boundary, EntryClass, Manifest, SnapshotId};

use crate::atomic;
use crate::error::{IoContext, Result, StoreError};
use crate::import;
use crate::restore::{self, PlannedFile, RestorePlan};
use crate::snapshot::Progress;
use crate::store::Store;

/// Directory of drill records in the store.
pub const DRILLS_DIR: &str = "drills";
/// Version of the drill record's JSON layout.
pub const RECORD_FORMAT: u32 = 1;
/// Manifest label naming the HitKeep version a snapshot was taken of.
pub const LABEL_HITKEEP_VERSION: &str = "hitkeep_version";
/// The placeholder `--validate-cmd` replaces with each database's path.
pub const DB_PLACEHOLDER: &str = "{db}";

/// Step names, as recorded.
pub mod step {
    /// The restore itself, every chunk and file verified as written.
    pub const RESTORE: &str = "restore";
    /// Every restored file read back and hashed.
    pub const FILE_HASHES: &str = "file-hashes";
    /// Every DuckDB database structurally sound.
    pub const DUCKDB: &str = "duckdb-structure";
    /// Every Parquet file structurally sound.
    pub const PARQUET: &str = "parquet-structure";
    /// The control-plane database present and sound.
    pub const CONTROL_PLANE: &str = "control-plane";
    /// The default tenant and the other tenants present and sound.
    pub const TENANTS: &str = "tenants";
    /// The retention archives present.
    pub const ARCHIVES: &str = "archives";
    /// The external check, per database.
    pub const VALIDATE_CMD: &str = "validate-cmd";
}

/// How to run a drill.
#[derive(Clone, Debug)]
pub struct DrillOptions {
    /// The snapshot to restore.
    pub snapshot: SnapshotId,
    /// Where to restore (absent or empty); `None`: a fresh temp directory.
    pub target: Option<PathBuf>,
    /// Keep the restored directory afterwards.
    pub keep: bool,
    /// An external check run per database, `{db}` replaced by its path.
    pub validate_cmd: Option<String>,
    /// How long one run of the external check may take.
    pub validate_timeout: Duration,
    /// The HitKeep version, when the caller knows it (else the
    /// snapshot's `hitkeep_version` label, if any).
    pub hitkeep_version: Option<String>,
    /// The default tenant's id, when the caller knows it.
    pub default_tenant: Option<String>,
}

/// How a step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    /// Checked and sound.
    Passed,
    /// Checked and found wanting.
    Failed,
    /// Nothing to check (the snapshot has no such thing).
    Skipped,
}

/// One step of a drill.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillStep {
    /// Its name (see [`step`]).
    pub name: String,
    /// The runbook step it stands in for.
    pub runbook: String,
    /// How it ended.
    pub status: StepStatus,
    /// What was checked, in one line.
    pub detail: String,
    /// What is wrong, one line each.
    pub problems: Vec<String>,
}

/// The record of one drill, `STORE/drills/<id>.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrillRecord {
    /// Layout version of this record ([`RECORD_FORMAT`]).
    pub format: u32,
    /// The drill's id: its start time, like snapshot ids.
    pub id: String,
    /// The snapshot drilled.
    pub snapshot: String,
    /// cairn's version.
    pub cairn_version: String,
    /// HitKeep's version, when known.
    pub hitkeep_version: Option<String>,
    /// DuckDB library versions that wrote the restored databases.
    pub duckdb_versions: Vec<String>,
    /// Where it was restored.
    pub target: String,
    /// Whether the restored directory was kept.
    pub kept: bool,
    /// Unix seconds at the start.
    pub started_unix: i64,
    /// How long it took, in seconds.
    pub duration_secs: f64,
    /// Whether every step passed or was skipped.
    pub passed: bool,
    /// The steps, in order.
    pub steps: Vec<DrillStep>,
}

/// A drill after its restore: what [`verify`] needs, without the store.
pub struct PreparedDrill {
    opts: DrillOptions,
    manifest: Manifest,
    plan: RestorePlan,
    target: PathBuf,
    /// The drill created the target (so removing it removes only ours).
    created_target: bool,
    restore_step: DrillStep,
    /// For an imported backup run: its export directories.
    exports: Option<Vec<import::ExportDir>>,
    /// Files the restore could not write.
    not_restored: BTreeSet<PathBuf>,
    started: Instant,
    started_unix: i64,
    /// The store's DuckDB chunk size (a listed DuckDB file's hash is of
    /// its chunks).
    duckdb_chunk: u32,
}

impl PreparedDrill {
    /// Where the snapshot was restored.
    pub fn target(&self) -> &Path {
        &self.target
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn runbook(name: &str) -> &'static str {
    match name {
        step::RESTORE | step::FILE_HASHES => "2. restore HitKeep from a recent snapshot",
        step::DUCKDB => "3. start HitKeep: every database must open",
        step::PARQUET | step::ARCHIVES => "9. retention archives still present",
        step::CONTROL_PLANE => "4, 8. log in as an admin; team membership",
        step::TENANTS => "5, 6. a default-tenant site and a non-default team site",
        _ => "5-8. validate sites, goals, funnels, ecommerce (external check)",
    }
}

fn finish_step(name: &str, detail: String, problems: Vec<String>) -> DrillStep {
    DrillStep {
        name: name.to_string(),
        runbook: runbook(name).to_string(),
        status: if problems.is_empty() {
            StepStatus::Passed
        } else {
            StepStatus::Failed
        },
        detail,
        problems,
    }
}

fn skipped(name: &str, detail: impl Into<String>) -> DrillStep {
    DrillStep {
        name: name.to_string(),
        runbook: runbook(name).to_string(),
        status: StepStatus::Skipped,
        detail: detail.into(),
        problems: Vec::new(),
    }
}

/// Phase 1, with the store open: checks the options, makes the target
/// and restores the snapshot into it. A restore that loses files is not
/// an error here: it is a failed `restore` step.
pub fn prepare(
    store: &Store,
    opts: &DrillOptions,
    progress: &dyn Progress,
) -> Result<PreparedDrill> {
    if let Some(cmd) = &opts.validate_cmd {
        if !cmd.contains(DB_PLACEHOLDER) {
            return Err(StoreError::Usage(format!(
                "--validate-cmd {cmd:?} does not contain {DB_PLACEHOLDER}, the database path it is run on"
            )));
        }
        if cmd.contains(&format!("'{DB_PLACEHOLDER}'"))
            || cmd.contains(&format!("\"{DB_PLACEHOLDER}\""))
        {
            return Err(StoreError::Usage(format!(
                "--validate-cmd {cmd:?}: write {DB_PLACEHOLDER} without quotes (cairn quotes the path itself)"
            )));
        }
    }
    let started = Instant::now();
    let started_unix = now_unix();
    let manifest = store.load_manifest(opts.snapshot)?;
    if let Some(t) = &opts.target {
        store.refuse_inside("drill target", t)?;
    }
    let (target, created_target) = make_target(opts.target.as_deref(), opts.snapshot)?;
    let durability = if opts.keep {
        restore::Durability::Synced
    } else {
        restore::Durability::Unsynced
    };
    let mut not_restored = BTreeSet::new();
    // As the runbook restores (and `restore --data-path` without
    // `--with-wal`): databases without their write-ahead logs, so the
    // checks and --validate-cmd see what a real recovery would open.
    let planned = restore::plan(store, &manifest).map(|mut p| {
        p.files
            .retain(|f| !matches!(f.class, cairn_format::EntryClass::Wal(_)));
        p
    });
    let (plan, restore_step) = match planned {
        Err(e) => (
            RestorePlan::default(),
            finish_step(
                step::RESTORE,
                "the snapshot could not be planned".into(),
                vec![e.to_string()],
            ),
        ),
        // A target the drill removes afterwards is not worth an fsync.
        Ok(plan) => match restore::execute(store, &plan, &target, durability, progress) {
            Err(e) => {
                not_restored.extend(plan.files.iter().map(|f| f.rel.clone()));
                let step = finish_step(
                    step::RESTORE,
                    format!("{} files planned", plan.files.len()),
                    vec![e.to_string()],
                );
                (plan, step)
            }
            Ok(report) => {
                let problems = report
                    .failed
                    .iter()
                    .map(|(p, why)| format!("{}: {why}", p.display()))
                    .collect();
                not_restored.extend(report.failed.iter().map(|(p, _)| p.clone()));
                let detail = format!(
                    "{} files, {} bytes restored, every chunk and file verified",
                    report.files, report.bytes
                );
                (plan, finish_step(step::RESTORE, detail, problems))
            }
        },
    };
    // An imported backup run restores as HitKeep's backup layout; its
    // checks are per export directory.
    let exports = import::is_backup_import(&manifest)
        .then(|| import::export_dirs(&manifest, &plan).unwrap_or_default());
    Ok(PreparedDrill {
        opts: opts.clone(),
        manifest,
        plan,
        target,
        created_target,
        restore_step,
        exports,
        not_restored,
        started,
        started_unix,
        duckdb_chunk: store.config().chunking.duckdb_chunk,
    })
}

/// The target to restore into: the given one (absent or an empty
/// directory) or a fresh private directory under the system temp dir.
fn make_target(given: Option<&Path>, snapshot: SnapshotId) -> Result<(PathBuf, bool)> {
    if let Some(t) = given {
        let t = std::path::absolute(t).at(t)?;
        return match fs::symlink_metadata(&t) {
            Ok(m) if !m.is_dir() => Err(StoreError::Usage(format!(
                "drill target {} exists and is not a directory",
                t.display()
            ))),
            Ok(_) => {
                if fs::read_dir(&t).at(&t)?.next().is_some() {
                    // A drill only ever restores into an empty directory
                    // (it removes what it restored afterwards).
                    Err(StoreError::Usage(format!(
                        "drill target {} is not empty (give an empty or absent directory)",
                        t.display()
                    )))
                } else {
                    Ok((t, false))
                }
            }
            Err(_) => {
                fs::DirBuilder::new().mode(0o700).create(&t).at(&t)?;
                Ok((t, true))
            }
        };
    }
    let base = std::env::temp_dir();
    let path = atomic::temp_path(&base, &format!("cairn-drill-{snapshot}"));
    fs::DirBuilder::new().mode(0o700).create(&path).at(&path)?;
    Ok((path, true))
}

/// Phase 2, without the store: runs the checks on the restored
/// directory, the external command, and removes the directory unless
/// asked to keep it.
pub fn verify(prepared: PreparedDrill) -> DrillRecord {
    let p = &prepared;
    let restored: Vec<&PlannedFile> = p
        .plan
        .files
        .iter()
        .filter(|f| !p.not_restored.contains(&f.rel))
        .collect();
    let mut steps = vec![p.restore_step.clone()];
    steps.push(file_hashes(&p.target, &restored, p.duckdb_chunk));
    let (duckdb_step, dbs) = duckdb_structure(&p.target, &restored);
    steps.push(duckdb_step);
    steps.push(parquet_structure(&p.target, &restored));
    let boundary = p.manifest.boundary.as_ref();
    let mut checked_paths: Vec<PathBuf> = dbs
        .iter()
        .filter(|d| d.sound)
        .map(|d| p.target.join(&d.rel))
        .collect();
    if let Some(exports) = &p.exports {
        let (cp, tenants, sound) = export_steps(&p.target, exports);
        steps.extend([cp, tenants]);
        steps.push(skipped(
            step::ARCHIVES,
            "HitKeep's built-in backups do not include archives",
        ));
        checked_paths = sound;
    } else {
        steps.push(control_plane(&p.plan, &dbs, boundary));
        steps.push(tenants(
            &p.plan,
            &dbs,
            boundary,
            p.opts.default_tenant.as_deref(),
        ));
        steps.push(archives(&p.plan, &p.not_restored, boundary));
    }
    if let Some(cmd) = &p.opts.validate_cmd {
        steps.push(validate_cmd(cmd, &checked_paths, p.opts.validate_timeout));
    }
    let mut versions: Vec<String> = dbs.iter().filter_map(|d| d.library.clone()).collect();
    versions.sort();
    versions.dedup();
    // `kept` says what is true afterwards: a directory that could not be
    // removed is reported as kept, not silently left behind.
    let kept = p.opts.keep || !remove_target(&p.target, p.created_target);
    let hitkeep_version = p
        .opts
        .hitkeep_version
        .clone()
        .or_else(|| p.manifest.labels.get(LABEL_HITKEEP_VERSION).cloned());
    DrillRecord {
        format: RECORD_FORMAT,
        id: SnapshotId::from_unix(p.started_unix).to_string(),
        snapshot: p.manifest.id.to_string(),
        cairn_version: env!("CARGO_PKG_VERSION").to_string(),
        hitkeep_version,
        duckdb_versions: versions,
        target: p.target.display().to_string(),
        kept,
        started_unix: p.started_unix,
        duration_secs: p.started.elapsed().as_secs_f64(),
        passed: steps.iter().all(|s| s.status != StepStatus::Failed),
        steps,
    }
}

/// Removes what the drill restored: the directory if the drill made it,
/// else its contents. Directories restored read-only are made writable
/// first if a removal fails. Returns whether everything is gone.
fn remove_target(target: &Path, created: bool) -> bool {
    let remove = || -> std::io::Result<()> {
        if created {
            return fs::remove_dir_all(target);
        }
        for e in fs::read_dir(target)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                fs::remove_dir_all(e.path())?;
            } else {
                fs::remove_file(e.path())?;
            }
        }
        Ok(())
    };
    if remove().is_ok() {
        return true;
    }
    make_dirs_writable(target);
    remove().is_ok()
}

/// Adds owner write and search permission to every directory under
/// `dir` (symlinks are not followed).
fn make_dirs_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mut perm = meta.permissions();
    perm.set_mode(perm.mode() | 0o700);
    let _ = fs::set_permissions(dir, perm);
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            make_dirs_writable(&e.path());
        }
    }
}

fn file_hashes(target: &Path, files: &[&PlannedFile], duckdb_chunk: u32) -> DrillStep {
    let problems: Vec<String> = files
        .par_iter()
        .filter_map(|f| {
            let path = target.join(&f.rel);
            match crate::ingest::file_hash(&path, &f.content.layout, duckdb_chunk) {
                Err(e) => Some(format!("{}: {e}", f.rel.display())),
                Ok((len, hash)) if len != f.content.size || hash != f.content.hash => Some(
                    format!("{}: content differs from the snapshot", f.rel.display()),
                ),
                Ok(_) => None,
            }
        })
        .collect();
    let bytes: u64 = files.iter().map(|f| f.content.size).sum();
    finish_step(
        step::FILE_HASHES,
        format!("{} files, {bytes} bytes read back and hashed", files.len()),
        problems,
    )
}

/// A database in the restored tree and how its check went.
struct DbFound {
    rel: PathBuf,
    sound: bool,
    library: Option<String>,
}

fn is_database(f: &PlannedFile) -> bool {
    matches!(
        f.class,
        EntryClass::ControlPlaneDb | EntryClass::TenantDb(_)
    ) || f.content.layout.duckdb().is_some()
}

fn duckdb_structure(target: &Path, files: &[&PlannedFile]) -> (DrillStep, Vec<DbFound>) {
    let dbs: Vec<&PlannedFile> = files.iter().copied().filter(|f| is_database(f)).collect();
    if dbs.is_empty() {
        return (
            skipped(step::DUCKDB, "no DuckDB databases in the snapshot"),
            Vec::new(),
        );
    }
    let checked: Vec<(DbFound, Vec<String>, u64)> = dbs
        .par_iter()
        .map(|f| {
            let path = target.join(&f.rel);
            let result = File::open(&path).and_then(|file| {
                let len = file.metadata()?.len();
                duckdb_check::check_db_file(&file, len)
            });
            let (problems, library, blocks) = match result {
                Ok(c) => {
                    let library =
                        (!c.library_version.is_empty()).then(|| c.library_version.clone());
                    (c.problems, library, c.blocks_verified)
                }
                Err(e) => (vec![e.to_string()], None, 0),
            };
            let found = DbFound {
                rel: f.rel.clone(),
                sound: problems.is_empty(),
                library,
            };
            let problems = problems
                .into_iter()
                .map(|p| format!("{}: {p}", f.rel.display()))
                .collect();
            (found, problems, blocks)
        })
        .collect();
    let blocks: u64 = checked.iter().map(|c| c.2).sum();
    let mut problems = Vec::new();
    let mut found = Vec::new();
    for (f, p, _) in checked {
        problems.extend(p);
        found.push(f);
    }
    let step = finish_step(
        step::DUCKDB,
        format!(
            "{} databases: main header, both database headers, block count against file size, {blocks} used blocks' checksums",
            found.len()
        ),
        problems,
    );
    (step, found)
}

/// Whether a Parquet file is structurally sound: `PAR1` at both ends
/// (`PARE` at the end for an encrypted footer), and a footer length that
/// fits between them. `None` when sound, else why not.
pub fn parquet_problem(path: &Path) -> Option<String> {
    let check = || -> std::io::Result<Option<String>> {
        let f = File::open(path)?;
        let len = f.metadata()?.len();
        if len < 12 {
            return Ok(Some(format!(
                "{len} bytes, shorter than an empty Parquet file"
            )));
        }
        let mut head = [0u8; 4];
        let mut tail = [0u8; 8];
        f.read_exact_at(&mut head, 0)?;
        f.read_exact_at(&mut tail, len - 8)?;
        if &head != b"PAR1" {
            return Ok(Some("no PAR1 magic at the start".into()));
        }
        if &tail[4..] != b"PAR1" && &tail[4..] != b"PARE" {
            return Ok(Some("no PAR1 magic at the end (truncated?)".into()));
        }
        let footer = u64::from(u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")));
        if footer == 0 || footer > len - 12 {
            return Ok(Some(format!(
                "footer length {footer} does not fit in the file ({len} bytes)"
            )));
        }
        Ok(None)
    };
    check().unwrap_or_else(|e| Some(e.to_string()))
}

fn is_parquet(f: &PlannedFile) -> bool {
    matches!(f.class, EntryClass::Archive { .. })
        || f.rel
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

fn parquet_structure(target: &Path, files: &[&PlannedFile]) -> DrillStep {
    let parquet: Vec<&PlannedFile> = files.iter().copied().filter(|f| is_parquet(f)).collect();
    if parquet.is_empty() {
        return skipped(step::PARQUET, "no Parquet files in the snapshot");
    }
    let problems: Vec<String> = parquet
        .par_iter()
        .filter_map(|f| {
            parquet_problem(&target.join(&f.rel)).map(|p| format!("{}: {p}", f.rel.display()))
        })
        .collect();
    finish_step(
        step::PARQUET,
        format!(
            "{} Parquet files: magic at both ends, footer length",
            parquet.len()
        ),
        problems,
    )
}

fn control_plane(plan: &RestorePlan, dbs: &[DbFound], boundary: Option<&Boundary>) -> DrillStep {
    let in_snapshot = plan
        .files
        .iter()
        .find(|f| f.class == EntryClass::ControlPlaneDb);
    let Some(file) = in_snapshot else {
        let why = match boundary {
            Some(b) => format!(
                "the snapshot holds no control-plane database ({} was missing when it was taken)",
                b.db_path
            ),
            None => "the snapshot holds no control-plane database".to_string(),
        };
        return finish_step(
            step::CONTROL_PLANE,
            "control-plane database".into(),
            vec![why],
        );
    };
    let mut problems = Vec::new();
    match dbs.iter().find(|d| d.rel == file.rel) {
        None => problems.push(format!("{}: not restored", file.rel.display())),
        Some(d) if !d.sound => problems.push(format!(
            "{}: not structurally sound (see {})",
            file.rel.display(),
            step::DUCKDB
        )),
        Some(_) => {}
    }
    finish_step(
        step::CONTROL_PLANE,
        format!(
            "control-plane database {} ({} bytes)",
            file.rel.display(),
            file.content.size
        ),
        problems,
    )
}

/// The default tenant: the one given, else the only tenant with a
/// database and no archives of its own while the archive root holds
/// archives (the default tenant's archives live at the root).
fn default_tenant(boundary: &Boundary, given: Option<&str>) -> Option<String> {
    if let Some(g) = given {
        return Some(g.to_string());
    }
    if boundary.default_archive.0 == 0 {
        return None;
    }
    let mut candidates = boundary
        .tenants
        .iter()
        .filter(|t| t.db.is_some() && t.archive_files == 0);
    match (candidates.next(), candidates.next()) {
        (Some(t), None) => Some(t.id.clone()),
        _ => None,
    }
}

fn tenants(
    plan: &RestorePlan,
    dbs: &[DbFound],
    boundary: Option<&Boundary>,
    given_default: Option<&str>,
) -> DrillStep {
    let Some(b) = boundary else {
        return skipped(
            step::TENANTS,
            "the snapshot was not taken as a HitKeep data path",
        );
    };
    let expected: Vec<&str> = b
        .tenants
        .iter()
        .filter(|t| t.db.is_some())
        .map(|t| t.id.as_str())
        .collect();
    let mut problems = Vec::new();
    let sound = |t: &str| -> std::result::Result<(), String> {
        let Some(file) = plan
            .files
            .iter()
            .find(|f| f.class == EntryClass::TenantDb(t.to_string()))
        else {
            return Err(format!("tenant {t}: its database is not in the snapshot"));
        };
        match dbs.iter().find(|d| d.rel == file.rel) {
            None => Err(format!("tenant {t}: {} not restored", file.rel.display())),
            Some(d) if !d.sound => Err(format!(
                "tenant {t}: {} is not structurally sound (see {})",
                file.rel.display(),
                step::DUCKDB
            )),
            Some(_) => Ok(()),
        }
    };
    let default = default_tenant(b, given_default);
    let default_note = match &default {
        Some(d) => {
            if !expected.contains(&d.as_str()) {
                problems.push(format!(
                    "default tenant {d}: its database is not in the snapshot"
                ));
            }
            format!("default tenant {d}")
        }
        None if expected.is_empty() => {
            "no tenant databases: the default tenant lives in the control plane (before 2.13)"
                .to_string()
        }
        None => "default tenant not identified offline (pass --default-tenant UUID)".to_string(),
    };
    for t in &expected {
        if let Err(p) = sound(t) {
            problems.push(p);
        }
    }
    let others = match &default {
        Some(d) => format!(
            "{} non-default",
            expected.iter().filter(|t| **t != d.as_str()).count()
        ),
        None => "every tenant database checked".to_string(),
    };
    for f in &b.findings {
        if f.starts_with("tenant ") && f.contains(" vanished") {
            problems.push(f.clone());
        }
    }
    for g in &b.gave_up {
        problems.push(format!(
            "{g}: its capture gave up (kept changing); not in this snapshot"
        ));
    }
    finish_step(
        step::TENANTS,
        format!(
            "{} tenant databases; {default_note}; {others}",
            expected.len()
        ),
        problems,
    )
}

fn archives(
    plan: &RestorePlan,
    not_restored: &BTreeSet<PathBuf>,
    boundary: Option<&Boundary>,
) -> DrillStep {
    let Some(b) = boundary else {
        return skipped(
            step::ARCHIVES,
            "the snapshot was not taken as a HitKeep data path",
        );
    };
    let mut problems = Vec::new();
    for f in &b.findings {
        if f.starts_with("archive directory disappeared") {
            problems.push(f.clone());
        }
    }
    let expected = b.default_archive.0 + b.tenants.iter().map(|t| t.archive_files).sum::<u64>();
    if expected == 0 && problems.is_empty() {
        return match &b.archive {
            Some(ArchiveLocation::External(u)) => skipped(
                step::ARCHIVES,
                format!("archives are in object storage ({u}), not captured"),
            ),
            _ => skipped(step::ARCHIVES, "the snapshot holds no retention archives"),
        };
    }
    let archive_files: Vec<&PlannedFile> = plan
        .files
        .iter()
        .filter(|f| matches!(f.class, EntryClass::Archive { .. }))
        .collect();
    let restored = archive_files
        .iter()
        .filter(|f| !not_restored.contains(&f.rel))
        .count() as u64;
    for f in archive_files
        .iter()
        .filter(|f| not_restored.contains(&f.rel))
    {
        problems.push(format!("{}: not restored", f.rel.display()));
    }
    if (archive_files.len() as u64) < expected {
        problems.push(format!(
            "the snapshot recorded {expected} archive files but holds {}",
            archive_files.len()
        ));
    }
    finish_step(
        step::ARCHIVES,
        format!("{restored} of {expected} archive files restored"),
        problems,
    )
}

/// What is missing from a DuckDB export directory: `schema.sql`,
/// `load.sql`, and every file `load.sql` copies from (by name: DuckDB
/// resolves them in the directory it imports).
fn export_problems(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if !dir.join("schema.sql").is_file() {
        out.push(format!("{}: no schema.sql", dir.display()));
    }
    let load = match fs::read_to_string(dir.join(import::EXPORT_COMPLETE_MARKER)) {
        Ok(l) => l,
        Err(e) => {
            out.push(format!("{}: load.sql: {e}", dir.display()));
            return out;
        }
    };
    for line in load.lines() {
        let Some((_, rest)) = line.split_once(" FROM '") else {
            continue;
        };
        let Some((path, _)) = rest.split_once('\'') else {
            continue;
        };
        let Some(name) = Path::new(path).file_name() else {
            continue;
        };
        if !dir.join(name).is_file() {
            out.push(format!(
                "{}: load.sql copies from {}, which is missing",
                dir.display(),
                name.to_string_lossy()
            ));
        }
    }
    out
}

/// The `control-plane` and `tenants` steps of an imported backup run:
/// every export complete. Also returns the complete export directories
/// (what `--validate-cmd` runs on).
fn export_steps(
    target: &Path,
    exports: &[import::ExportDir],
) -> (DrillStep, DrillStep, Vec<PathBuf>) {
    let mut sound = Vec::new();
    let mut cp_problems = Vec::new();
    let mut tenant_problems = Vec::new();
    let mut cp_dir = None;
    let mut tenants = 0;
    for e in exports {
        let rel = &e.rel;
        let dir = target.join(rel);
        let problems = export_problems(&dir);
        if problems.is_empty() {
            sound.push(dir);
        }
        if e.tenant.is_none() {
            cp_dir = Some(rel.clone());
            cp_problems.extend(problems);
        } else {
            tenants += 1;
            tenant_problems.extend(problems);
        }
    }
    let cp = match cp_dir {
        Some(d) => finish_step(
            step::CONTROL_PLANE,
            format!("control-plane export {}", d.display()),
            cp_problems,
        ),
        None => finish_step(
            step::CONTROL_PLANE,
            "control-plane export".into(),
            vec!["the backup run has no control-plane export (shared/)".into()],
        ),
    };
    let tenants = finish_step(
        step::TENANTS,
        format!("{tenants} tenant exports: schema.sql, load.sql and every file it loads"),
        tenant_problems,
    );
    (cp, tenants, sound)
}

/// Quotes `s` for `sh`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn validate_cmd(cmd: &str, dbs: &[PathBuf], timeout: Duration) -> DrillStep {
    if dbs.is_empty() {
        return finish_step(
            step::VALIDATE_CMD,
            format!("{cmd}: no sound database to run it on"),
            vec!["no database to validate".into()],
        );
    }
    let mut problems = Vec::new();
    for db in dbs {
        let line = cmd.replace(DB_PLACEHOLDER, &shell_quote(&db.display().to_string()));
        if let Err(why) = run_check(&line, timeout) {
            problems.push(format!("{}: {why}", db.display()));
        }
    }
    finish_step(
        step::VALIDATE_CMD,
        format!("{cmd} run on {} databases", dbs.len()),
        problems,
    )
}

/// Runs `sh -c line` in its own process group; an error says why it
/// failed (exit status and the last line it wrote to stderr, or the
/// timeout, after which the whole group is killed).
fn run_check(line: &str, timeout: Duration) -> std::result::Result<(), String> {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(line)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("could not run sh: {e}"))?;
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stderr.read_to_end(&mut out);
        let _ = tx.send(out);
    });
    // No deadline when the timeout is too long to add.
    let deadline = Instant::now().checked_add(timeout);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if deadline.is_some_and(|d| Instant::now() >= d) => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for the check: {e}")),
        }
    };
    // Whatever the shell left running in its group goes now (it would
    // otherwise outlive the drill and hold stderr open).
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
    let err = rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
    let Some(status) = status else {
        return Err(format!("timed out after {:.0}s", timeout.as_secs_f64()));
    };
    if status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&err);
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    Err(format!(
        "exited with {status}{}",
        if last.is_empty() {
            String::new()
        } else {
            format!(": {}", last.trim())
        }
    ))
}

/// Phase 3, with the store open: writes the record atomically as
/// `STORE/drills/<id>.json`, never replacing one (a drill starting in the
/// same second takes the next free second). Returns the record's path.
pub fn save(store: &Store, record: &mut DrillRecord) -> Result<PathBuf> {
    store.files().require_local("storing a drill record")?;
    let dir = store.root().join(DRILLS_DIR);
    if !dir.is_dir() {
        fs::create_dir_all(&dir).at(&dir)?;
        atomic::sync_dir(store.root())?;
    }
    let mut id: SnapshotId = record.id.parse().unwrap_or(SnapshotId(record.started_unix));
    loop {
        record.id = id.to_string();
        let path = dir.join(format!("{}.json", record.id));
        let bytes = serde_json::to_vec_pretty(record)
            .map_err(|e| StoreError::Usage(format!("drill record: {e}")))?;
        match atomic::write_file(&store.tmp_dir(), &path, &bytes, false) {
            Ok(()) => return Ok(path),
            Err(e) if e.cause.kind() == std::io::ErrorKind::AlreadyExists => {
                id = SnapshotId(id.0 + 1);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The drill records in a store.
#[derive(Clone, Debug, Default)]
pub struct DrillList {
    /// Every readable record, oldest first.
    pub records: Vec<DrillRecord>,
    /// Files under `drills/` that are not a readable record, with why.
    pub unreadable: Vec<(PathBuf, String)>,
}

/// Every drill record in the store.
pub fn list(store: &Store) -> Result<DrillList> {
    let dir = store.files().store_dir().join(DRILLS_DIR);
    let mut out = DrillList::default();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).at(&dir),
    };
    for e in entries {
        let path = e.at(&dir)?.path();
        if path.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        let parsed = fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<DrillRecord>(&b).map_err(|e| e.to_string()));
        match parsed {
            Ok(r) => out.records.push(r),
            Err(why) => out.unreadable.push((path, why)),
        }
    }
    out.records.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}
