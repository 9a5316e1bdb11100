//! What cairn knows of HitKeep's layout: which roots make up a data path's
//! boundary, what each file is (control-plane db, tenant db, WAL, archive,
//! asset, import), which names are transient, and how a snapshot's
//! boundary compares with its parent's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use cairn_format::{ArchiveLocation, Boundary, DbCapture, EntryClass, TenantSummary};

use crate::snapshot::SourceSpec;

/// Root labels in a HitKeep snapshot.
pub const ROOT_DATA: &str = "data";
/// The control-plane db when it lives outside the data path.
pub const ROOT_DB: &str = "db";
/// Its WAL, when present.
pub const ROOT_DB_WAL: &str = "db.wal";
/// The archive directory when it lives outside the data path.
pub const ROOT_ARCHIVE: &str = "archive";

/// Where the archive directory is configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArchiveSpec {
    /// A local directory.
    Local(PathBuf),
    /// An object-storage URL: recorded, not captured.
    External(String),
}

/// The three HitKeep paths, resolved (absolute where local).
#[derive(Clone, Debug)]
pub struct HitkeepPaths {
    /// `HITKEEP_DB_PATH`, default `{data}/hitkeep.db`.
    pub db: PathBuf,
    /// `HITKEEP_DATA_PATH`.
    pub data: PathBuf,
    /// `HITKEEP_ARCHIVE_PATH`, default `{data}/archive`.
    pub archive: ArchiveSpec,
}

impl HitkeepPaths {
    /// Resolves paths the way HitKeep does: explicit values, else the
    /// defaults under the data path. `archive` may be an `s3://` URL.
    pub fn resolve(data: PathBuf, db: Option<PathBuf>, archive: Option<String>) -> Self {
        let data = absolute(data);
        let db = absolute(db.unwrap_or_else(|| data.join("hitkeep.db")));
        let archive = match archive {
            Some(a) if a.contains("://") => ArchiveSpec::External(a),
            Some(a) => ArchiveSpec::Local(absolute(PathBuf::from(a))),
            None => ArchiveSpec::Local(data.join("archive")),
        };
        Self { db, data, archive }
    }

    /// The db's path relative to the data path, when it lies inside it.
    pub fn db_in_data(&self) -> Option<PathBuf> {
        rel_inside(&self.db, &self.data)
    }

    /// The archive's path relative to the data path, when inside it.
    pub fn archive_in_data(&self) -> Option<PathBuf> {
        match &self.archive {
            ArchiveSpec::Local(a) => rel_inside(a, &self.data),
            ArchiveSpec::External(_) => None,
        }
    }

    /// The snapshot roots: the data path, plus the db (and its WAL) and the
    /// archive directory when they live outside it.
    pub fn sources(&self) -> Vec<SourceSpec> {
        let mut out = vec![SourceSpec {
            label: ROOT_DATA.into(),
            path: self.data.clone(),
        }];
        if self.db_in_data().is_none() {
            out.push(SourceSpec {
                label: ROOT_DB.into(),
                path: self.db.clone(),
            });
            let wal = wal_path(&self.db);
            if wal.exists() {
                out.push(SourceSpec {
                    label: ROOT_DB_WAL.into(),
                    path: wal,
                });
            }
        }
        if let ArchiveSpec::Local(a) = &self.archive {
            if self.archive_in_data().is_none() && a.is_dir() {
                out.push(SourceSpec {
                    label: ROOT_ARCHIVE.into(),
                    path: a.clone(),
                });
            }
        }
        out
    }
}

/// `p` made absolute against the current directory (not resolving links,
/// so a path that does not exist yet keeps its meaning).
fn absolute(p: PathBuf) -> PathBuf {
    std::path::absolute(&p).unwrap_or(p)
}

/// `{db}.wal`.
pub fn wal_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".wal");
    PathBuf::from(s)
}

fn rel_inside(path: &Path, dir: &Path) -> Option<PathBuf> {
    let p = std::fs::canonicalize(path).ok().or_else(|| {
        let parent = std::fs::canonicalize(path.parent()?).ok()?;
        Some(parent.join(path.file_name()?))
    })?;
    let d = std::fs::canonicalize(dir).ok()?;
    p.strip_prefix(&d).ok().map(Path::to_owned)
}

/// Whether a file name is one of HitKeep's transient maintenance names
/// (`*.compacting`, `*.pre-compact`, `*.split-work`, `*.restore-*.tmp`,
/// `*.pre-restore.<ts>`): left out of snapshots and reported.
pub fn is_transient(name: &[u8]) -> bool {
    let n = String::from_utf8_lossy(name);
    n.ends_with(".compacting")
        || n.ends_with(".pre-compact")
        || n.ends_with(".split-work")
        || (n.ends_with(".tmp") && n.contains(".restore-"))
        || n.contains(".pre-restore.")
}

/// Classifies entries by their place in the layout.
#[derive(Clone, Debug, Default)]
pub struct Classifier {
    /// The db's components inside the data root, if there.
    pub db_in_data: Option<Vec<String>>,
    /// The archive's components inside the data root, if there.
    pub archive_in_data: Option<Vec<String>>,
}

fn components(p: &Path) -> Vec<String> {
    p.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect()
}

/// The site id in `site_{site}_{unix}.parquet`.
fn archive_site(name: &str) -> Option<String> {
    let stem = name.strip_prefix("site_")?.strip_suffix(".parquet")?;
    let (site, ts) = stem.rsplit_once('_')?;
    (!site.is_empty() && ts.bytes().all(|b| b.is_ascii_digit())).then(|| site.to_string())
}

impl Classifier {
    /// For the given paths.
    pub fn new(paths: &HitkeepPaths) -> Self {
        Self {
            db_in_data: paths.db_in_data().map(|p| components(&p)),
            archive_in_data: paths.archive_in_data().map(|p| components(&p)),
        }
    }

    /// The class of a file at `rel` (components) under the root `label`.
    pub fn classify(&self, label: &str, rel: &[String]) -> EntryClass {
        match label {
            ROOT_DB => return EntryClass::ControlPlaneDb,
            ROOT_DB_WAL => return EntryClass::Wal(None),
            ROOT_ARCHIVE => return archive_class(rel),
            _ => {}
        }
        if let Some(db) = &self.db_in_data {
            if rel == &db[..] {
                return EntryClass::ControlPlaneDb;
            }
            if rel.len() == db.len()
                && rel[..rel.len() - 1] == db[..db.len() - 1]
                && rel[rel.len() - 1] == format!("{}.wal", db[db.len() - 1])
            {
                return EntryClass::Wal(None);
            }
        }
        if let Some(a) = &self.archive_in_data {
            if rel.len() > a.len() && rel[..a.len()] == a[..] {
                return archive_class(&rel[a.len()..]);
            }
        }
        let parts: Vec<&str> = rel.iter().map(String::as_str).collect();
        match parts.as_slice() {
            ["tenants", t, "hitkeep.db"] => EntryClass::TenantDb((*t).to_string()),
            ["tenants", t, "hitkeep.db.wal"] => EntryClass::Wal(Some((*t).to_string())),
            ["assets", ..] => EntryClass::Asset,
            ["imports", ..] => EntryClass::Import,
            _ => EntryClass::Other,
        }
    }
}

fn archive_class(rel: &[String]) -> EntryClass {
    let parts: Vec<&str> = rel.iter().map(String::as_str).collect();
    match parts.as_slice() {
        [name] => archive_site(name).map_or(EntryClass::Other, |site| EntryClass::Archive {
            tenant: None,
            site,
        }),
        ["tenants", t, "sites", _, name] => {
            archive_site(name).map_or(EntryClass::Other, |site| EntryClass::Archive {
                tenant: Some((*t).to_string()),
                site,
            })
        }
        _ => EntryClass::Other,
    }
}

/// Accumulates a [`Boundary`] from classified files.
#[derive(Default)]
pub struct BoundaryBuilder {
    b: Boundary,
    tenants: BTreeMap<String, TenantSummary>,
    sites: BTreeMap<String, BTreeSet<String>>,
    wals: BTreeSet<Option<String>>,
}

impl BoundaryBuilder {
    /// Starts a boundary for `paths`.
    pub fn new(paths: &HitkeepPaths) -> Self {
        let archive = match &paths.archive {
            ArchiveSpec::External(u) => ArchiveLocation::External(u.clone()),
            ArchiveSpec::Local(p) if p.is_dir() => ArchiveLocation::Local(p.display().to_string()),
            ArchiveSpec::Local(p) => ArchiveLocation::Missing(p.display().to_string()),
        };
        Self {
            b: Boundary {
                db_path: paths.db.display().to_string(),
                data_path: paths.data.display().to_string(),
                archive: Some(archive),
                ..Boundary::default()
            },
            ..Self::default()
        }
    }

    /// Records a transient file that was left out.
    pub fn excluded(&mut self, rel: String) {
        self.b.excluded.push(rel);
    }

    /// Records a DuckDB file whose capture gave up.
    pub fn gave_up(&mut self, rel: String) {
        self.b.gave_up.push(rel);
    }

    /// Records a file.
    pub fn file(&mut self, class: &EntryClass, root: &str, rel: &str, size: u64, iteration: u64) {
        let db = || DbCapture {
            path: rel.to_string(),
            root: root.to_string(),
            size,
            iteration,
            wal: false,
        };
        match class {
            EntryClass::ControlPlaneDb => self.b.control_plane = Some(db()),
            EntryClass::TenantDb(t) => self.tenant(t).db = Some(db()),
            EntryClass::Wal(t) => {
                self.wals.insert(t.clone());
            }
            EntryClass::Archive { tenant: None, .. } => {
                self.b.default_archive.0 += 1;
                self.b.default_archive.1 += size;
            }
            EntryClass::Archive {
                tenant: Some(t),
                site,
            } => {
                let s = self.tenant(t);
                s.archive_files += 1;
                s.archive_bytes += size;
                self.sites
                    .entry(t.clone())
                    .or_default()
                    .insert(site.clone());
            }
            EntryClass::Asset => {
                self.b.assets.0 += 1;
                self.b.assets.1 += size;
            }
            EntryClass::Import => {
                self.b.imports.0 += 1;
                self.b.imports.1 += size;
            }
            EntryClass::Other => {
                self.b.other.0 += 1;
                self.b.other.1 += size;
            }
        }
    }

    fn tenant(&mut self, id: &str) -> &mut TenantSummary {
        self.tenants
            .entry(id.to_string())
            .or_insert_with(|| TenantSummary {
                id: id.to_string(),
                ..TenantSummary::default()
            })
    }

    /// The boundary, with completeness findings against `parent`.
    pub fn finish(mut self, parent: Option<&Boundary>) -> Boundary {
        for (t, sites) in std::mem::take(&mut self.sites) {
            self.tenant(&t).sites = sites.into_iter().collect();
        }
        for w in std::mem::take(&mut self.wals) {
            match w {
                None => {
                    if let Some(c) = self.b.control_plane.as_mut() {
                        c.wal = true;
                    }
                }
                Some(t) => {
                    if let Some(db) = self.tenant(&t).db.as_mut() {
                        db.wal = true;
                    }
                }
            }
        }
        self.b.tenants = std::mem::take(&mut self.tenants).into_values().collect();
        self.b.findings = findings(&self.b, parent);
        self.b
    }
}

/// Completeness findings: what is missing or changed in the boundary.
pub fn findings(now: &Boundary, parent: Option<&Boundary>) -> Vec<String> {
    let mut out = Vec::new();
    match &now.control_plane {
        None => out.push(format!("control-plane database {} is missing", now.db_path)),
        Some(c) if c.size == 0 => {
            out.push(format!("control-plane database {} is empty", now.db_path))
        }
        _ => {}
    }
    if let Some(ArchiveLocation::External(u)) = &now.archive {
        out.push(format!(
            "archive path {u} is object storage: recorded, not captured"
        ));
    }
    for g in &now.gave_up {
        out.push(format!(
            "{g}: capture gave up (kept changing); not in this snapshot"
        ));
    }
    let had_archive = |b: &Boundary| matches!(b.archive, Some(ArchiveLocation::Local(_)));
    if let Some(p) = missing_outside_data(now) {
        if !parent.is_some_and(had_archive) {
            out.push(format!("archive directory {p} is missing"));
        }
    }
    let Some(parent) = parent else {
        return out;
    };
    let with_db = |b: &Boundary| -> BTreeSet<String> {
        b.tenants
            .iter()
            .filter(|t| t.db.is_some())
            .map(|t| t.id.clone())
            .collect()
    };
    let (before, after) = (with_db(parent), with_db(now));
    for t in before.difference(&after) {
        out.push(format!(
            "tenant {t} vanished (its database was in the previous snapshot)"
        ));
    }
    for t in after.difference(&before) {
        out.push(format!("tenant {t} appeared"));
    }
    if let Some(ArchiveLocation::Local(was)) = &parent.archive {
        match &now.archive {
            Some(ArchiveLocation::Local(_)) => {}
            Some(ArchiveLocation::Missing(now)) if now == was => {
                out.push(format!("archive directory disappeared: {now} is missing"))
            }
            Some(ArchiveLocation::Missing(now)) => out.push(format!(
                "archive directory disappeared: {now} is missing (the previous snapshot captured {was})"
            )),
            Some(ArchiveLocation::External(url)) => out.push(format!(
                "archive directory disappeared: archives now go to {url} (the previous snapshot captured {was})"
            )),
            None => out.push(format!("archive directory disappeared (was {was})")),
        }
    }
    out
}

/// An archive directory configured outside the data path that is not
/// there (the default one under the data path may not exist before the
/// first archive is written).
fn missing_outside_data(b: &Boundary) -> Option<&str> {
    match &b.archive {
        Some(ArchiveLocation::Missing(p))
            if !cairn_remote::resolved(Path::new(p))
                .starts_with(cairn_remote::resolved(Path::new(&b.data_path))) =>
        {
            Some(p)
        }
        _ => None,
    }
}

/// Whether a finding is informational rather than a completeness problem
/// (`--strict` refuses only problems).
pub fn is_problem(finding: &str) -> bool {
    !finding.ends_with(" appeared") && !finding.ends_with("recorded, not captured")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c() -> Classifier {
        Classifier {
            db_in_data: Some(vec!["hitkeep.db".into()]),
            archive_in_data: Some(vec!["archive".into()]),
        }
    }

    fn rel(s: &str) -> Vec<String> {
        s.split('/').map(String::from).collect()
    }

    #[test]
    fn classifies_the_layout() {
        let c = c();
        assert_eq!(
            c.classify("data", &rel("hitkeep.db")),
            EntryClass::ControlPlaneDb
        );
        assert_eq!(
            c.classify("data", &rel("hitkeep.db.wal")),
            EntryClass::Wal(None)
        );
        assert_eq!(
            c.classify("data", &rel("tenants/u1/hitkeep.db")),
            EntryClass::TenantDb("u1".into())
        );
        assert_eq!(
            c.classify("data", &rel("tenants/u1/hitkeep.db.wal")),
            EntryClass::Wal(Some("u1".into()))
        );
        assert_eq!(
            c.classify("data", &rel("archive/site_s1_1700000000.parquet")),
            EntryClass::Archive {
                tenant: None,
                site: "s1".into()
            }
        );
        assert_eq!(
            c.classify(
                "data",
                &rel("archive/tenants/u2/sites/s2/site_s2_17.parquet")
            ),
            EntryClass::Archive {
                tenant: Some("u2".into()),
                site: "s2".into()
            }
        );
        assert_eq!(
            c.classify("data", &rel("assets/qr-codes/s/q/x.png")),
            EntryClass::Asset
        );
        assert_eq!(
            c.classify("data", &rel("imports/s/a.csv")),
            EntryClass::Import
        );
        assert_eq!(
            c.classify("data", &rel("spam-filter.json")),
            EntryClass::Other
        );
        assert_eq!(
            c.classify("db", &rel("hitkeep.db")),
            EntryClass::ControlPlaneDb
        );
    }

    #[test]
    fn transient_names() {
        for n in [
            "hitkeep.db.compacting",
            "x.pre-compact",
            "a.split-work",
            "hitkeep.db.restore-123.tmp",
            "hitkeep.db.pre-restore.2026-03-08T120000Z",
        ] {
            assert!(is_transient(n.as_bytes()), "{n}");
        }
        for n in [
            "hitkeep.db",
            "hitkeep.db.wal",
            "restore.tmp",
            "site_a_1.parquet",
        ] {
            assert!(!is_transient(n.as_bytes()), "{n}");
        }
    }

    fn archive_findings(
        archive: ArchiveLocation,
        data: &Path,
        parent: Option<&Boundary>,
    ) -> Vec<String> {
        let b = Boundary {
            data_path: data.display().to_string(),
            archive: Some(archive),
            ..Boundary::default()
        };
        findings(&b, parent)
            .into_iter()
            .filter(|f| f.contains("archive"))
            .collect()
    }

    #[test]
    fn a_missing_archive_is_a_finding_only_outside_the_data_path() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let missing = |p: PathBuf| ArchiveLocation::Missing(p.display().to_string());
        // Outside, also when spelled through the data path and `..`.
        for p in [dir.path().join("ext"), data.join("../ext")] {
            let f = archive_findings(missing(p.clone()), &data, None);
            assert_eq!(f.len(), 1, "{p:?}: {f:?}");
            assert!(f[0].ends_with("is missing"), "{f:?}");
        }
        // Inside (HitKeep makes it when first needed), also when the data
        // path is given through a symlink and the archive by its real path.
        assert!(archive_findings(missing(data.join("archive")), &data, None).is_empty());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&data, &link).unwrap();
        assert!(archive_findings(missing(data.join("archive")), &link, None).is_empty());
    }

    #[test]
    fn an_archive_captured_before_and_not_now_is_a_problem() {
        let was = "/srv/archive".to_string();
        let parent = Boundary {
            archive: Some(ArchiveLocation::Local(was.clone())),
            ..Boundary::default()
        };
        let data = Path::new("/srv/data");
        for (now, want) in [
            (
                ArchiveLocation::Missing(was.clone()),
                "/srv/archive is missing",
            ),
            (
                ArchiveLocation::Missing("/elsewhere".into()),
                "captured /srv/archive",
            ),
            (
                ArchiveLocation::External("s3://b/a".into()),
                "archives now go to s3://b/a",
            ),
        ] {
            let f: Vec<String> = archive_findings(now, data, Some(&parent))
                .into_iter()
                .filter(|f| f.contains("disappeared"))
                .collect();
            assert_eq!(f.len(), 1, "{f:?}");
            assert!(
                f[0].starts_with("archive directory disappeared") && f[0].contains(want),
                "{f:?}"
            );
            assert!(is_problem(&f[0]), "{f:?}");
        }
        assert!(archive_findings(ArchiveLocation::Local(was), data, Some(&parent)).is_empty());
    }
}
