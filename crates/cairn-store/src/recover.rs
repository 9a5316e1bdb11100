//! Restore into a live HitKeep layout, the way HitKeep's own
//! `recover restore-backup` does it, without ever losing the files that
//! are there.
//!
//! Plan, then execute:
//! 1. **Plan**: map every file of the snapshot to its place (`--db`,
//!    `--data-path`, the archive directory), keep the scope (everything,
//!    one tenant, or the control plane), leave WALs out unless asked
//!    (`--with-wal`: a restore must boot without replaying a WAL), and
//!    compare with what is there: identical files are left alone.
//! 2. **Refuse if in use**: any other process holding a database that
//!    would be replaced (found through `/proc`) stops the restore unless
//!    `force` is set.
//! 3. **Stage**: write every new file to `<name>.restore-<ts>.tmp` beside
//!    its destination, verifying every chunk and the whole file.
//!    Databases get mode 0600. A failure here removes the temp files:
//!    nothing else was touched.
//! 4. **Swap**: move each existing file (and, for a database, its `.wal`)
//!    aside as `<name>.pre-restore.<ts>`, rename the staged file in.
//!    A failure here undoes the swaps done so far in reverse order, so
//!    every original is back in place.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use cairn_format::{ArchiveLocation, EntryClass, Manifest, SnapshotId};

use crate::atomic;
use crate::error::{IoContext, Result, StoreError};
use crate::hitkeep::{wal_path, ROOT_ARCHIVE, ROOT_DB, ROOT_DB_WAL};
use crate::inuse::{holders, Holder};
use crate::reader::{ChunkReader, FrameCache};
use crate::restore::{self, stage_file, Durability, PlannedFile, StagedFile};
use crate::snapshot::Progress;
use crate::store::Store;
use crate::sync_threads::{Completion, Outcome, SyncThreads};

/// Which part of a snapshot to restore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Shared and tenant-local data, archives, assets: everything.
    All,
    /// One tenant: its database and its archives.
    Tenant(String),
    /// The control-plane database only.
    ControlPlane,
}

/// Where and what to restore.
#[derive(Clone, Debug)]
pub struct RecoverOptions {
    /// The snapshot.
    pub snapshot: SnapshotId,
    /// The control-plane database path.
    pub db: PathBuf,
    /// The data path.
    pub data: PathBuf,
    /// The archive directory; `None` keeps the snapshot's layout (inside
    /// the data path, or the directory the snapshot recorded).
    pub archive: Option<PathBuf>,
    /// What to restore.
    pub scope: Scope,
    /// Restore captured WALs too.
    pub with_wal: bool,
    /// Proceed even if a process holds a database open.
    pub force: bool,
}

/// What will happen to one destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing is there: create it.
    Create,
    /// Something else is there: move it aside, then put the snapshot's in.
    Replace,
    /// The same content is there: leave it.
    Unchanged,
}

/// One file of the plan.
#[derive(Clone, Debug)]
pub struct RecoverItem {
    /// The snapshot's file.
    pub file: PlannedFile,
    /// Where it goes.
    pub dest: PathBuf,
    /// What happens there.
    pub action: Action,
    /// Whether it is a database (mode 0600; its `.wal` is moved aside).
    pub is_db: bool,
}

/// The plan: every file, what happens to it, and who holds what open.
#[derive(Clone, Debug)]
pub struct RecoverPlan {
    /// Suffix for temp and aside names (`2026-03-08T120000Z`).
    pub stamp: String,
    /// Files.
    pub items: Vec<RecoverItem>,
    /// Processes holding a database that would be replaced.
    pub holders: Vec<Holder>,
    /// WALs in the snapshot that are not restored (without `with_wal`).
    pub skipped_wals: Vec<PathBuf>,
    /// Existing WALs beside databases being replaced (moved aside).
    pub stale_wals: Vec<PathBuf>,
}

impl RecoverPlan {
    /// `<dest>.pre-restore.<stamp>`.
    pub fn aside(&self, dest: &Path) -> PathBuf {
        suffixed(dest, &format!(".pre-restore.{}", self.stamp))
    }

    fn temp(&self, dest: &Path) -> PathBuf {
        suffixed(dest, &format!(".restore-{}.tmp", self.stamp))
    }

    /// Bytes to write.
    pub fn bytes(&self) -> u64 {
        self.items
            .iter()
            .filter(|i| i.action != Action::Unchanged)
            .map(|i| i.file.content.size)
            .sum()
    }
}

/// `p` with `suffix` after its file name, the name cut to fit (leaving
/// room for [`free_name`]'s `.N` too).
fn suffixed(p: &Path, suffix: &str) -> PathBuf {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let name = p.file_name().map(OsStrExt::as_bytes).unwrap_or_default();
    let mut name = restore::fit_name(name, suffix.len() + 8);
    name.extend_from_slice(suffix.as_bytes());
    p.with_file_name(std::ffi::OsString::from_vec(name))
}

/// What a recovery did.
#[derive(Clone, Debug, Default)]
pub struct RecoverReport {
    /// Files written.
    pub written: u64,
    /// Files left alone (already identical).
    pub unchanged: u64,
    /// Originals moved aside.
    pub moved_aside: Vec<PathBuf>,
    /// Bytes written.
    pub bytes: u64,
}

fn in_scope(scope: &Scope, class: &EntryClass) -> bool {
    match scope {
        Scope::All => true,
        Scope::ControlPlane => matches!(class, EntryClass::ControlPlaneDb | EntryClass::Wal(None)),
        Scope::Tenant(t) => match class {
            EntryClass::TenantDb(x) | EntryClass::Wal(Some(x)) => x == t,
            EntryClass::Archive {
                tenant: Some(x), ..
            } => x == t,
            _ => false,
        },
    }
}

fn same_content(path: &Path, f: &PlannedFile, duckdb_chunk: u32) -> bool {
    match fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() == f.content.size => {}
        _ => return false,
    }
    matches!(
        crate::ingest::file_hash(path, &f.content.layout, duckdb_chunk),
        Ok((len, hash)) if len == f.content.size && hash == f.content.hash
    )
}

/// Plans a recovery of `manifest` (see the module docs).
pub fn plan(
    store: &Store,
    manifest: &Manifest,
    opts: &RecoverOptions,
    stamp: String,
) -> Result<RecoverPlan> {
    if manifest.is_backup_import() {
        return Err(StoreError::Usage(format!(
            "snapshot {} is an import of HitKeep's backups, not a data path; restore it with `restore --as-hitkeep-backup --target DIR`",
            manifest.id
        )));
    }
    // Relative paths are taken from the working directory now: a
    // destination's parent must be a real directory (or one to create).
    let absolute = |p: &Path| std::path::absolute(p).at(p);
    let opts = &RecoverOptions {
        db: absolute(&opts.db)?,
        data: absolute(&opts.data)?,
        archive: opts.archive.as_deref().map(absolute).transpose()?,
        ..opts.clone()
    };
    store.refuse_inside("data path", &opts.data)?;
    store.refuse_inside("control-plane database", &opts.db)?;
    if let Some(a) = &opts.archive {
        store.refuse_inside("archive directory", a)?;
    }
    if opts.data.exists() && !opts.data.is_dir() {
        return Err(StoreError::Usage(format!(
            "data path {} is not a directory",
            opts.data.display()
        )));
    }
    let files = restore::plan(store, manifest)?;
    if let Some((dir, why)) = files.failed.first() {
        // In place, a partial restore would mix snapshot and live files.
        return Err(StoreError::Usage(format!(
            "snapshot {}: directory {} cannot be read ({why}); refusing to restore in place",
            manifest.id,
            dir.display()
        )));
    }
    let several = manifest.roots.len() > 1;
    let boundary = manifest.boundary.as_ref();
    // Where the archive sat inside the source data path, if it did.
    let archive_prefix: Option<PathBuf> = boundary.and_then(|b| match &b.archive {
        Some(ArchiveLocation::Local(a)) => Path::new(a)
            .strip_prefix(&b.data_path)
            .ok()
            .map(Path::to_owned),
        _ => None,
    });
    let recorded_archive: Option<PathBuf> = manifest
        .roots
        .iter()
        .find(|r| r.label == ROOT_ARCHIVE)
        .map(|r| PathBuf::from(&r.path));
    let mut items = Vec::new();
    let mut skipped_wals = Vec::new();
    for f in files.files {
        if !in_scope(&opts.scope, &f.class) {
            continue;
        }
        let rel_in_root = if several {
            f.rel.strip_prefix(&f.root).unwrap_or(&f.rel).to_owned()
        } else {
            f.rel.clone()
        };
        let dest = match (&f.class, f.root.as_str()) {
            (EntryClass::ControlPlaneDb, _) => opts.db.clone(),
            (EntryClass::Wal(None), _) | (_, ROOT_DB_WAL) => wal_path(&opts.db),
            (_, ROOT_DB) => opts.db.clone(),
            (_, ROOT_ARCHIVE) => match (&opts.archive, &recorded_archive) {
                (Some(a), _) | (None, Some(a)) => a.join(&rel_in_root),
                (None, None) => opts.data.join("archive").join(&rel_in_root),
            },
            (EntryClass::Archive { .. }, _) => match (&opts.archive, &archive_prefix) {
                (Some(a), Some(prefix)) => {
                    a.join(rel_in_root.strip_prefix(prefix).unwrap_or(&rel_in_root))
                }
                _ => opts.data.join(&rel_in_root),
            },
            _ => opts.data.join(&rel_in_root),
        };
        if matches!(f.class, EntryClass::Wal(_)) && !opts.with_wal {
            skipped_wals.push(dest);
            continue;
        }
        let is_db = matches!(
            f.class,
            EntryClass::ControlPlaneDb | EntryClass::TenantDb(_)
        );
        let action = if fs::symlink_metadata(&dest).is_err() {
            Action::Create
        } else if same_content(&dest, &f, store.config().chunking.duckdb_chunk) {
            Action::Unchanged
        } else {
            Action::Replace
        };
        items.push(RecoverItem {
            file: f,
            dest,
            action,
            is_db,
        });
    }
    // A scope the snapshot holds nothing of is a mistake (a mistyped
    // tenant id), not an empty restore.
    if items.is_empty() && skipped_wals.is_empty() {
        match &opts.scope {
            Scope::All => {}
            Scope::Tenant(t) => {
                return Err(StoreError::Usage(format!(
                    "snapshot {} holds no tenant {t}",
                    manifest.id
                )))
            }
            Scope::ControlPlane => {
                return Err(StoreError::Usage(format!(
                    "snapshot {} holds no control-plane database",
                    manifest.id
                )))
            }
        }
    }
    // A WAL beside any restored database (replaced, identical, or new) is
    // not the snapshot's: replaying it would bring back later writes.
    let restored_dbs: Vec<PathBuf> = items
        .iter()
        .filter(|i| i.is_db)
        .map(|i| i.dest.clone())
        .collect();
    let restored_wals: BTreeSet<PathBuf> = items
        .iter()
        .filter(|i| matches!(i.file.class, EntryClass::Wal(_)))
        .map(|i| i.dest.clone())
        .collect();
    let stale_wals = restored_dbs
        .iter()
        .map(|d| wal_path(d))
        .filter(|w| w.exists() && !restored_wals.contains(w))
        .collect();
    Ok(RecoverPlan {
        stamp,
        holders: holders(&restored_dbs),
        items,
        skipped_wals,
        stale_wals,
    })
}

/// `path`, or `path.1`, `path.2`, ... whichever does not exist yet: an
/// aside name never replaces an earlier aside.
fn free_name(path: &Path) -> PathBuf {
    let mut candidate = path.to_owned();
    let mut n = 0;
    while fs::symlink_metadata(&candidate).is_ok() {
        n += 1;
        // `suffixed` left room for this.
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        candidate = PathBuf::from(name);
    }
    candidate
}

/// A fault injected by tests through `CAIRN_FAILPOINT=<name>`.
fn failpoint(name: &str) -> Result<()> {
    if std::env::var("CAIRN_FAILPOINT").is_ok_and(|v| v == name) {
        return Err(StoreError::Usage(format!("injected failure at {name}")));
    }
    Ok(())
}

/// One completed step of the swap, undone in reverse on failure.
enum Step {
    MovedAside { from: PathBuf, to: PathBuf },
    Placed { dest: PathBuf },
}

fn undo(steps: Vec<Step>) {
    for step in steps.into_iter().rev() {
        match step {
            Step::Placed { dest } => {
                let _ = fs::remove_file(&dest);
            }
            Step::MovedAside { from, to } => {
                let _ = fs::rename(&to, &from);
            }
        }
    }
}

/// Executes a plan (see the module docs).
pub fn execute(
    store: &Store,
    plan: &RecoverPlan,
    opts: &RecoverOptions,
    progress: &dyn Progress,
) -> Result<RecoverReport> {
    if let Some(h) = plan.holders.first() {
        if !opts.force {
            return Err(StoreError::InUse {
                path: h.path.clone(),
                pid: h.pid,
                comm: h.comm.clone(),
            });
        }
    }
    let todo: Vec<&RecoverItem> = plan
        .items
        .iter()
        .filter(|i| i.action != Action::Unchanged)
        .collect();
    progress.start(todo.len() as u64, plan.bytes());

    // Stage.
    let mut created_dirs = Vec::new();
    for item in &todo {
        let dir = item.dest.parent().unwrap_or(Path::new("/"));
        let mut missing = Vec::new();
        let mut d = dir;
        while fs::symlink_metadata(d).is_err() {
            missing.push(d.to_owned());
            match d.parent() {
                Some(p) => d = p,
                None => break,
            }
        }
        for m in missing.into_iter().rev() {
            fs::create_dir(&m).at(&m)?;
            created_dirs.push(m);
        }
    }
    let reader = ChunkReader::new(store);
    // In place: a file replaces a live database, so it must be on disk
    // before it is renamed there; the sync threads make it so while the
    // next file is staged.
    let mut staged = std::thread::scope(|scope| -> Result<Vec<Outcome>> {
        let syncs = SyncThreads::start(scope, progress)?;
        let mut outcomes: Vec<Outcome> = todo
            .par_iter()
            .enumerate()
            .map_init(
                || (FrameCache::default(), FrameCache::default()),
                |(lists, data), (i, item)| {
                    let temp = plan.temp(&item.dest);
                    let _ = fs::remove_file(&temp);
                    let mode = if item.is_db {
                        0o600
                    } else {
                        item.file.meta.mode & 0o7777
                    };
                    let staged = stage_file(
                        &reader,
                        (lists, data),
                        &item.file,
                        &temp,
                        mode,
                        Durability::Synced,
                        progress,
                    );
                    match staged {
                        Ok(staged) => syncs.send(i, Staged { temp, staged }),
                        Err(e) => {
                            progress.file_done();
                            Some((i, Err(e.to_string())))
                        }
                    }
                },
            )
            .flatten()
            .collect();
        syncs.finish(&mut outcomes, todo.len());
        Ok(outcomes)
    })?;
    staged.sort_by_key(|(i, _)| *i);
    let cleanup = |created_dirs: &[PathBuf]| {
        for item in &todo {
            let _ = fs::remove_file(plan.temp(&item.dest));
        }
        for d in created_dirs.iter().rev() {
            let _ = fs::remove_dir(d);
        }
    };
    let mut bytes = 0;
    for ((_, r), item) in staged.into_iter().zip(&todo) {
        match r {
            Ok(n) => bytes += n,
            Err(e) => {
                cleanup(&created_dirs);
                return Err(StoreError::Usage(format!(
                    "{}: not restored, nothing changed: {e}",
                    item.dest.display()
                )));
            }
        }
    }
    if let Err(e) = failpoint("recover-after-stage") {
        cleanup(&created_dirs);
        return Err(e);
    }

    // Swap.
    let mut steps = Vec::new();
    let mut report = RecoverReport {
        bytes,
        unchanged: (plan.items.len() - todo.len()) as u64,
        ..Default::default()
    };
    let result = (|| {
        for wal in &plan.stale_wals {
            let to = free_name(&plan.aside(wal));
            fs::rename(wal, &to).at(wal)?;
            steps.push(Step::MovedAside {
                from: wal.clone(),
                to,
            });
        }
        for item in &todo {
            if item.action == Action::Replace {
                let from = item.dest.clone();
                let to = free_name(&plan.aside(&from));
                fs::rename(&from, &to).at(&from)?;
                steps.push(Step::MovedAside { from, to });
            }
            fs::rename(plan.temp(&item.dest), &item.dest).at(&item.dest)?;
            steps.push(Step::Placed {
                dest: item.dest.clone(),
            });
            failpoint("recover-mid-swap")?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        undo(steps);
        cleanup(&created_dirs);
        return Err(e);
    }
    // A database left alone because it is identical still gets mode 0600.
    for item in plan
        .items
        .iter()
        .filter(|i| i.is_db && i.action == Action::Unchanged)
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&item.dest, fs::Permissions::from_mode(0o600)).at(&item.dest)?;
    }
    let dirs: BTreeSet<&Path> = todo.iter().filter_map(|i| i.dest.parent()).collect();
    for d in dirs {
        atomic::sync_dir(d)?;
    }
    for s in steps {
        match s {
            Step::MovedAside { to, .. } => report.moved_aside.push(to),
            Step::Placed { .. } => report.written += 1,
        }
    }
    Ok(report)
}

/// A file staged under its temp name, on its way to disk.
struct Staged {
    temp: PathBuf,
    staged: StagedFile,
}

impl Completion for Staged {
    /// Waits until the file is on disk (the swap renames it later).
    fn complete(self) -> Result<u64> {
        self.staged.make_durable().at(&self.temp)
    }
}
