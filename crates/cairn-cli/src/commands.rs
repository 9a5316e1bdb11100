//! One function per command: call the library, print the result as text
//! or JSON.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde_json::json;

use cairn_remote::{Location, S3Flags};
use cairn_store::format::{ArchiveLocation, Boundary, DbCapture, EntryClass, Manifest, SnapshotId};
use cairn_store::recover::{self, Action, RecoverOptions, Scope};
use cairn_store::restore::{self, RestoreOptions};
use cairn_store::snapshot::{self, SnapshotOptions};
use cairn_store::{hitkeep, HitkeepPaths};
use cairn_store::{stats, LockOptions, Store, StoreError, StoreFiles};

use crate::args::{
    Cli, IndexAction, IndexArgs, InitArgs, LsArgs, RecoverAction, RecoverArgs, RestoreArgs,
    ShowArgs, SnapshotArgs,
};
use crate::progress::Bar;

/// Parses a store location as the command line and environment say.
pub fn location(cli: &Cli, text: &str) -> anyhow::Result<Location> {
    let flags = S3Flags {
        endpoint: cli.s3.s3_endpoint.clone(),
        region: cli.s3.s3_region.clone(),
        path_style: cli.s3.s3_path_style,
        access_key_id: cli.s3.s3_access_key_id.clone(),
        secret_access_key: cli.s3.s3_secret_access_key.clone(),
    };
    Ok(Location::parse(text, &flags, &|k| std::env::var(k).ok())?)
}

/// The `--store` location.
pub fn store_location(cli: &Cli) -> anyhow::Result<Location> {
    match &cli.store {
        Some(s) => location(cli, s),
        None => bail!("no store given: pass --store PATH or set CAIRN_STORE"),
    }
}

/// How hard S3 requests are retried.
pub fn retry_policy(cli: &Cli) -> cairn_remote::RetryPolicy {
    cairn_remote::RetryPolicy {
        max_retries: cli.s3.s3_retries,
        ..Default::default()
    }
}

/// The `--store` path, for commands that change a store (they refuse a
/// remote one).
pub fn store_path(cli: &Cli) -> anyhow::Result<std::path::PathBuf> {
    match store_location(cli)? {
        Location::Local(p) => Ok(p),
        Location::S3(s) => Err(StoreError::RemoteReadOnly {
            location: s.url(),
            what: format!("`cairn {}`", command_name()),
        }
        .into()),
    }
}

/// The subcommand's name (`prune`, `index rebuild`).
fn command_name() -> String {
    let matches = <Cli as clap::CommandFactory>::command().try_get_matches_from(
        crate::args::normalize_go_flags(std::env::args_os().collect()),
    );
    let mut names = Vec::new();
    if let Ok(m) = &matches {
        let mut m = m;
        while let Some((name, sub)) = m.subcommand() {
            names.push(name.to_string());
            m = sub;
        }
    }
    names.join(" ")
}

/// Takes the lock of a remote store as the command line says, and prints
/// its warnings.
pub fn remote_lock(
    cli: &Cli,
    backend: std::sync::Arc<dyn cairn_remote::Backend>,
) -> anyhow::Result<cairn_store::lock::RemoteLock> {
    let lock = cairn_store::lock::RemoteLock::acquire(backend, &lock_options(cli)?)?;
    for w in lock.warnings() {
        eprintln!("cairn: warning: {w}");
    }
    Ok(lock)
}

/// Where remote stores keep their local index cache.
fn cache_dir(cli: &Cli) -> anyhow::Result<std::path::PathBuf> {
    if let Some(d) = &cli.s3.cache_dir {
        return Ok(d.clone());
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return Ok(std::path::PathBuf::from(x).join("cairn"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => Ok(std::path::PathBuf::from(h).join(".cache").join("cairn")),
        None => bail!("no cache directory for a remote store: set --cache-dir or CAIRN_CACHE_DIR"),
    }
}

/// The files of the store at `loc`, local or remote, without a lock.
pub fn store_files(cli: &Cli, loc: &Location) -> anyhow::Result<StoreFiles> {
    Ok(match loc {
        Location::Local(p) => StoreFiles::open_local(p, cache_dir(cli).ok().as_deref())?,
        remote => {
            let backend = cairn_remote::open(remote, &retry_policy(cli))?;
            StoreFiles::open_remote(backend, &cache_dir(cli)?)?
        }
    })
}

/// How this command takes the store lock: `--lock-wait`, and its name in
/// the lock record (`snapshot`, `index rebuild`).
pub fn lock_options(cli: &Cli) -> anyhow::Result<LockOptions> {
    let name = command_name();
    Ok(LockOptions {
        wait: cli.lock_wait,
        command: (!name.is_empty()).then_some(name),
    })
}

/// Opens the store, taking its lock as the command line says, and prints
/// the lock's warnings (a stale lock cleared, another host's record).
pub fn open_locked(cli: &Cli) -> anyhow::Result<Store> {
    open_locked_at(cli, &store_location(cli)?)
}

fn open_locked_at(cli: &Cli, loc: &Location) -> anyhow::Result<Store> {
    let store = Store::open_files(store_files(cli, loc)?, &lock_options(cli)?)?;
    for w in store.lock().warnings() {
        eprintln!("cairn: warning: {w}");
    }
    Ok(store)
}

/// Opens the store (local or remote) and reports what opening did to its
/// index.
pub fn open(cli: &Cli) -> anyhow::Result<Store> {
    open_at(cli, &store_location(cli)?)
}

fn open_at(cli: &Cli, loc: &Location) -> anyhow::Result<Store> {
    let store = open_locked_at(cli, loc)?;
    let sync = store.index_sync();
    if !cli.quiet && (sync.rebuilt || sync.packs_added > 0) {
        eprintln!(
            "cairn: index {} ({} packs added, {} snapshots cataloged)",
            if sync.rebuilt { "rebuilt" } else { "updated" },
            sync.packs_added,
            sync.snapshots_added
        );
    }
    if let Some(why) = &sync.recreated {
        eprintln!("cairn: warning: the index could not be opened ({why}); it was recreated from packs and manifests");
    }
    if !sync.vanished_packs.is_empty() {
        let names: Vec<String> = sync.vanished_packs.iter().map(|p| p.to_string()).collect();
        eprintln!(
            "cairn: warning: {} indexed packs are gone or changed size, so the index was rebuilt: {}",
            names.len(),
            names.join(", ")
        );
    }
    for (pack, why) in &sync.unreadable_packs {
        eprintln!("cairn: warning: pack {pack} is unreadable and was left out of the index: {why}");
    }
    Ok(store)
}

/// Opens the store for a command that changes it: a local store this
/// process may only read is refused, saying why, before its index is
/// built in the cache.
pub fn open_to_change(cli: &Cli) -> anyhow::Result<Store> {
    let loc = store_location(cli)?;
    if let Location::Local(path) = &loc {
        StoreFiles::require_writable_at(path, &command_name())?;
    }
    open_at(cli, &loc)
}

pub fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).expect("json"));
}

pub fn init(cli: &Cli, a: &InitArgs) -> anyhow::Result<ExitCode> {
    let path = store_path(cli)?;
    let cfg = Store::init_with(&path, |c| {
        c.chunking.duckdb_chunk = a.duckdb_chunk_kib.saturating_mul(1024);
        c.compression.zstd_level = a.compression_level;
    })?;
    if cli.json {
        print_json(
            &json!({"store": path, "store_id": cfg.store_id_hex(), "format_version": cfg.format_version}),
        );
    } else if !cli.quiet {
        println!(
            "created store {} (id {}, format {})",
            path.display(),
            cfg.store_id_hex(),
            cfg.format_version
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn manifest_json(m: &Manifest) -> serde_json::Value {
    json!({
        "id": m.id.to_string(),
        "parent": m.parent.map(|p| p.to_string()),
        "hostname": m.hostname,
        "roots": m.roots.iter().map(|r| json!({"label": r.label, "path": r.path})).collect::<Vec<_>>(),
        "files": m.stats.files,
        "dirs": m.stats.dirs,
        "logical_bytes": m.stats.logical_bytes,
        "files_unchanged": m.stats.files_unchanged,
        "bytes_read": m.stats.bytes_read,
        "new_chunks": m.stats.new_chunks,
        "new_data_bytes": m.stats.new_data_bytes,
        "new_meta_bytes": m.stats.new_meta_bytes,
        "added_pack_bytes": m.stats.added_pack_bytes,
        "new_packs": m.stats.new_packs,
        "boundary": m.boundary.as_ref().map(boundary_json),
    })
}

fn boundary_json(b: &Boundary) -> serde_json::Value {
    let db = |d: &Option<DbCapture>| {
        d.as_ref().map(|d| json!({"path": d.path, "root": d.root, "size": d.size, "iteration": d.iteration, "wal": d.wal}))
    };
    json!({
        "db_path": b.db_path,
        "data_path": b.data_path,
        "archive": match &b.archive {
            Some(ArchiveLocation::Local(p)) => json!({"local": p}),
            Some(ArchiveLocation::External(u)) => json!({"external": u}),
            Some(ArchiveLocation::Missing(p)) => json!({"missing": p}),
            None => json!(null),
        },
        "control_plane": db(&b.control_plane),
        "tenants": b.tenants.iter().map(|t| json!({
            "id": t.id, "db": db(&t.db), "archive_files": t.archive_files,
            "archive_bytes": t.archive_bytes, "sites": t.sites,
        })).collect::<Vec<_>>(),
        "default_archive": {"files": b.default_archive.0, "bytes": b.default_archive.1},
        "assets": {"files": b.assets.0, "bytes": b.assets.1},
        "imports": {"files": b.imports.0, "bytes": b.imports.1},
        "other": {"files": b.other.0, "bytes": b.other.1},
        "excluded": b.excluded,
        "gave_up": b.gave_up,
        "findings": b.findings,
        "consistent": b.findings.iter().all(|f| !hitkeep::is_problem(f)),
    })
}

/// What a file is to HitKeep, for `ls`.
fn class_label(c: &EntryClass) -> String {
    match c {
        EntryClass::Other => "other".into(),
        EntryClass::ControlPlaneDb => "control-plane-db".into(),
        EntryClass::TenantDb(t) => format!("tenant-db:{t}"),
        EntryClass::Wal(None) => "wal:control-plane".into(),
        EntryClass::Wal(Some(t)) => format!("wal:{t}"),
        EntryClass::Archive { tenant: None, site } => format!("archive:default:{site}"),
        EntryClass::Archive {
            tenant: Some(t),
            site,
        } => format!("archive:{t}:{site}"),
        EntryClass::Asset => "asset".into(),
        EntryClass::Import => "import".into(),
    }
}

pub fn show(cli: &Cli, a: &ShowArgs) -> anyhow::Result<ExitCode> {
    let store = open(cli)?;
    let id = store.resolve(&a.snapshot)?;
    let m = store.load_manifest(id)?;
    if cli.json {
        print_json(&manifest_json(&m));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "snapshot {}  (parent {})",
        m.id,
        m.parent.map_or("none".into(), |p| p.to_string())
    );
    println!(
        "files {}, {}; host {}",
        m.stats.files,
        human(m.stats.logical_bytes),
        m.hostname
    );
    let Some(b) = &m.boundary else {
        println!("no HitKeep boundary recorded");
        return Ok(ExitCode::SUCCESS);
    };
    println!("db path:   {}", b.db_path);
    println!("data path: {}", b.data_path);
    match &b.archive {
        Some(ArchiveLocation::Local(p)) => println!("archive:   {p}"),
        Some(ArchiveLocation::External(u)) => {
            println!("archive:   {u} (object storage, not captured)")
        }
        Some(ArchiveLocation::Missing(p)) => println!("archive:   {p} (MISSING)"),
        None => {}
    }
    match &b.control_plane {
        Some(c) => println!(
            "control plane: {} {} (iteration {}{})",
            c.path,
            human(c.size),
            c.iteration,
            if c.wal { ", wal captured" } else { "" }
        ),
        None => println!("control plane: MISSING"),
    }
    println!("tenants: {}", b.tenants.len());
    for t in &b.tenants {
        let db = t.db.as_ref().map_or("no database".to_string(), |d| {
            format!(
                "{} (iteration {}{})",
                human(d.size),
                d.iteration,
                if d.wal { ", wal" } else { "" }
            )
        });
        println!(
            "  {}  db {}  archives {} ({}) sites {}",
            t.id,
            db,
            t.archive_files,
            human(t.archive_bytes),
            t.sites.len()
        );
    }
    println!(
        "default-tenant archives: {} ({})",
        b.default_archive.0,
        human(b.default_archive.1)
    );
    println!(
        "assets: {} ({})  imports: {} ({})  other: {} ({})",
        b.assets.0,
        human(b.assets.1),
        b.imports.0,
        human(b.imports.1),
        b.other.0,
        human(b.other.1)
    );
    if !b.excluded.is_empty() {
        println!("transient files left out: {}", b.excluded.len());
    }
    if b.findings.is_empty() {
        println!("consistency: complete");
    } else {
        println!("consistency:");
        for f in &b.findings {
            println!("  - {f}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn snapshot(cli: &Cli, a: &SnapshotArgs) -> anyhow::Result<ExitCode> {
    let store = open_to_change(cli)?;
    if a.forget && cairn_store::forget::stored_policy(&store)?.is_none() {
        bail!("--forget: no retention policy stored in the store (set one with `cairn policy --keep-...`)");
    }
    let paths = HitkeepPaths::resolve(a.data_path.clone(), a.db.clone(), a.archive_path.clone());
    let opts = SnapshotOptions {
        hitkeep: Some(paths),
        full_read: a.full_read,
        strict: a.strict,
        ..Default::default()
    };
    let bar = Bar::new(cli.quiet || cli.json, "snapshot");
    let started = std::time::Instant::now();
    let report = snapshot::snapshot(&store, &opts, &bar);
    bar.finish();
    let report = report?;
    for w in &report.warnings {
        eprintln!("cairn: warning: {w}");
    }
    let m = &report.manifest;
    if let Some(b) = &m.boundary {
        for x in &b.excluded {
            eprintln!("cairn: note: transient file left out: {x}");
        }
        for f in &b.findings {
            eprintln!("cairn: WARNING: {f}");
        }
    }
    if cli.json {
        let mut v = manifest_json(m);
        v["store_growth"] = json!(report.store_growth);
        v["seconds"] = json!(started.elapsed().as_secs_f64());
        v["warnings"] = json!(report.warnings);
        print_json(&v);
    } else if !cli.quiet {
        println!(
            "snapshot {}: {} files, {} ({} unchanged files skipped), read {}, stored {} new in {} chunks, store grew {} in {:.2}s",
            m.id,
            m.stats.files,
            human(m.stats.logical_bytes),
            m.stats.files_unchanged,
            human(m.stats.bytes_read),
            human(m.stats.new_data_bytes + m.stats.new_meta_bytes),
            m.stats.new_chunks,
            human(report.store_growth),
            started.elapsed().as_secs_f64()
        );
    }
    if a.forget {
        crate::cmd_lifecycle::apply(cli, &store, None, false)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn list(cli: &Cli) -> anyhow::Result<ExitCode> {
    let store = open(cli)?;
    let snaps = store.snapshots()?;
    for id in store.unreadable_snapshots()? {
        eprintln!(
            "cairn: WARNING: snapshot {id} is left out: its manifest cannot be read (cairn check)"
        );
    }
    let kept_by = crate::cmd_lifecycle::kept_by(&store)?;
    if cli.json {
        let list: Vec<_> = snaps
            .iter()
            .map(|m| {
                let mut v = manifest_json(m);
                if let Some(k) = kept_by.get(&m.id.to_string()) {
                    v["kept_by"] = json!(k);
                }
                v
            })
            .collect();
        print_json(&json!(list));
        return Ok(ExitCode::SUCCESS);
    }
    if !cli.quiet {
        println!(
            "{:<20} {:>8} {:>12} {:>12}  {:<16} roots",
            "snapshot", "files", "size", "added", "kept by"
        );
    }
    for m in &snaps {
        let id = m.id.to_string();
        println!(
            "{:<20} {:>8} {:>12} {:>12}  {:<16} {}",
            id,
            m.stats.files,
            human(m.stats.logical_bytes),
            human(m.stats.added_pack_bytes),
            kept_by.get(&id).map_or("-", String::as_str),
            m.roots
                .iter()
                .map(|r| r.path.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A path for a line of text: control characters, backslashes and bytes
/// that are not UTF-8 written as escapes (`\n`, `\\`, `\xff`), so one
/// entry is one line and every name can be told apart.
fn escaped(p: &Path) -> String {
    let mut out = String::new();
    for chunk in p.as_os_str().as_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => out.extend(c.escape_unicode()),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

pub fn ls(cli: &Cli, a: &LsArgs) -> anyhow::Result<ExitCode> {
    let store = open(cli)?;
    let id = store.resolve(&a.snapshot)?;
    let m = store.load_manifest(id)?;
    let plan = restore::plan(&store, &m)?;
    for (dir, why) in &plan.failed {
        eprintln!("cairn: error: {}: cannot be listed: {why}", dir.display());
    }
    let mut rows: Vec<(&Path, &'static str, u64, u32, String)> = Vec::new();
    for (p, meta) in &plan.dirs {
        let mode = meta.as_ref().map_or(0o755, |m| m.mode);
        rows.push((p, "dir", 0, mode, String::new()));
    }
    for f in &plan.files {
        rows.push((
            &f.rel,
            "file",
            f.content.size,
            f.meta.mode,
            class_label(&f.class),
        ));
    }
    for (p, _, meta) in &plan.symlinks {
        rows.push((p, "symlink", 0, meta.mode, String::new()));
    }
    rows.sort();
    if cli.json {
        print_json(&json!({
            "snapshot": id.to_string(),
            "entries": rows.iter().map(|(p, k, s, m, c)| {
                let mut e = json!({
                    "path": p.to_string_lossy(), "type": k, "size": s,
                    "mode": format!("{:o}", m & 0o7777), "class": c,
                });
                // A name that is not UTF-8, byte for byte.
                if p.to_str().is_none() {
                    e["path_hex"] = json!(hex::encode(p.as_os_str().as_bytes()));
                }
                e
            }).collect::<Vec<_>>(),
        }));
    } else {
        for (p, k, s, m, c) in rows {
            println!(
                "{:>4o} {:<7} {:>12} {:<24} {}",
                m & 0o7777,
                k,
                s,
                c,
                escaped(p)
            );
        }
    }
    Ok(if plan.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn restore(cli: &Cli, a: &RestoreArgs) -> anyhow::Result<ExitCode> {
    if a.as_hitkeep_backup {
        return crate::cmd_import::restore_as_backup(cli, a);
    }
    let store = open(cli)?;
    let id = store.resolve(&a.snapshot)?;
    let h = &a.hitkeep;
    let Some(target) = &a.target else {
        let data = h
            .data_path
            .clone()
            .context("--target or --data-path is required")?;
        let scope = match (&h.tenant, h.control_plane) {
            (Some(t), _) => Scope::Tenant(t.clone()),
            (None, true) => Scope::ControlPlane,
            (None, false) => Scope::All,
        };
        let opts = RecoverOptions {
            snapshot: id,
            db: h.db.clone().unwrap_or_else(|| data.join("hitkeep.db")),
            data,
            archive: h.archive_path.clone(),
            scope,
            with_wal: h.with_wal,
            force: h.force,
        };
        return in_place(cli, &store, &opts, h.yes);
    };
    let bar = Bar::new(cli.quiet || cli.json, "restore");
    let started = std::time::Instant::now();
    let report = restore::restore(
        &store,
        &RestoreOptions {
            snapshot: id,
            target: target.clone(),
            overwrite: a.overwrite,
            durability: if a.no_sync {
                restore::Durability::Unsynced
            } else {
                restore::Durability::Synced
            },
        },
        &bar,
    );
    bar.finish();
    let report = report?;
    for (p, why) in &report.failed {
        eprintln!("cairn: error: {}: not restored: {why}", p.display());
    }
    if cli.json {
        print_json(&json!({
            "snapshot": id.to_string(),
            "target": target,
            "files": report.files,
            "bytes": report.bytes,
            "failed": report.failed.iter().map(|(p, w)| json!({"path": p, "error": w})).collect::<Vec<_>>(),
            "seconds": started.elapsed().as_secs_f64(),
        }));
    } else if !cli.quiet {
        println!(
            "restored snapshot {} to {}: {} files, {} verified in {:.2}s{}",
            id,
            target.display(),
            report.files,
            human(report.bytes),
            started.elapsed().as_secs_f64(),
            if report.failed.is_empty() {
                String::new()
            } else {
                format!(", {} FAILED", report.failed.len())
            }
        );
    }
    if report.failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(1))
    }
}

pub fn recover(cli: &Cli, a: &RecoverArgs) -> anyhow::Result<ExitCode> {
    match &a.action {
        RecoverAction::RestoreBackup(r) => {
            let loc = match (&r.from, &cli.store) {
                (Some(p), _) | (None, Some(p)) => location(cli, p)?,
                (None, None) => bail!("no store given: pass -from STORE"),
            };
            let store = open_at(cli, &loc)?;
            let id = store.resolve(&r.snapshot)?;
            let opts = RecoverOptions {
                snapshot: id,
                db: r
                    .db
                    .clone()
                    .unwrap_or_else(|| r.data_path.join("hitkeep.db")),
                data: r.data_path.clone(),
                archive: r.archive_path.clone(),
                scope: r.tenant.clone().map_or(Scope::All, Scope::Tenant),
                with_wal: r.with_wal,
                force: r.force,
            };
            in_place(cli, &store, &opts, r.yes)
        }
    }
}

/// Restores into a live HitKeep layout: plan, show, ask (unless `yes`), execute.
fn in_place(
    cli: &Cli,
    store: &Store,
    opts: &RecoverOptions,
    yes: bool,
) -> anyhow::Result<ExitCode> {
    let manifest = store.load_manifest(opts.snapshot)?;
    let stamp = SnapshotId::from_unix(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    )
    .to_string();
    let plan = recover::plan(store, &manifest, opts, stamp)?;
    let count = |a: Action| plan.items.iter().filter(|i| i.action == a).count();
    if !cli.quiet || !yes {
        eprintln!(
            "restore snapshot {} into {} (db {}): {} files to create, {} to replace, {} already identical, {}",
            manifest.id,
            opts.data.display(),
            opts.db.display(),
            count(Action::Create),
            count(Action::Replace),
            count(Action::Unchanged),
            human(plan.bytes()),
        );
        for i in plan.items.iter().filter(|i| i.action == Action::Replace) {
            eprintln!(
                "  replace {} (old one kept as {})",
                i.dest.display(),
                plan.aside(&i.dest).display()
            );
        }
        for w in &plan.stale_wals {
            eprintln!(
                "  move aside {} (a restored database must not replay it)",
                w.display()
            );
        }
        for w in &plan.skipped_wals {
            eprintln!(
                "  skip captured WAL {} (use --with-wal to restore it)",
                w.display()
            );
        }
    }
    for h in &plan.holders {
        if opts.force {
            eprintln!(
                "cairn: WARNING: {} is open in process {} ({}); restoring anyway (--force)",
                h.path.display(),
                h.pid,
                h.comm
            );
        }
    }
    if !yes && !confirm()? {
        eprintln!("cairn: not confirmed; nothing changed (pass --yes to restore without asking)");
        return Ok(ExitCode::from(1));
    }
    let bar = Bar::new(cli.quiet || cli.json, "restore");
    let report = recover::execute(store, &plan, opts, &bar);
    bar.finish();
    let report = report?;
    if cli.json {
        print_json(&json!({
            "snapshot": manifest.id.to_string(),
            "written": report.written,
            "unchanged": report.unchanged,
            "bytes": report.bytes,
            "moved_aside": report.moved_aside,
        }));
    } else if !cli.quiet {
        println!(
            "restored snapshot {}: {} files written and verified ({}), {} already identical, {} originals moved aside",
            manifest.id,
            report.written,
            human(report.bytes),
            report.unchanged,
            report.moved_aside.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks on stderr, reads stdin; anything but y/yes (or no input) is no.
fn confirm() -> anyhow::Result<bool> {
    use std::io::Write;
    eprint!("Proceed? [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line)? == 0 {
        eprintln!();
        return Ok(false);
    }
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES"))
}

pub fn stats(cli: &Cli) -> anyhow::Result<ExitCode> {
    let store = open(cli)?;
    let s = stats::stats(&store)?;
    if cli.json {
        print_json(&json!({
            "logical_bytes": s.logical_bytes,
            "stored_bytes": s.stored_bytes,
            "dedup_ratio": s.dedup_ratio,
            "reclaimable_bytes": s.reclaimable_bytes,
            "packs": s.packs,
            "chunks": s.chunks,
            "snapshots": s.snapshots.iter().map(|l| json!({
                "id": l.id.to_string(), "files": l.files, "logical_bytes": l.logical_bytes,
                "added_bytes": l.added_bytes, "new_data_bytes": l.new_data_bytes, "new_meta_bytes": l.new_meta_bytes,
            })).collect::<Vec<_>>(),
        }));
        return Ok(ExitCode::SUCCESS);
    }
    println!("snapshots:     {}", s.snapshots.len());
    println!("logical size:  {}", human(s.logical_bytes));
    println!("stored size:   {}", human(s.stored_bytes));
    println!("dedup ratio:   {:.1}x", s.dedup_ratio);
    match s.reclaimable_bytes {
        Some(n) => println!(
            "reclaimable:   {} (unused by every snapshot; `cairn prune` frees it)",
            human(n)
        ),
        None => println!(
            "reclaimable:   unknown (a snapshot cannot be read in full; run `cairn check`)"
        ),
    }
    println!("packs, chunks: {}, {}", s.packs, s.chunks);
    println!();
    println!(
        "{:<20} {:>12} {:>12} {:>12}",
        "snapshot", "size", "added", "new meta"
    );
    for l in &s.snapshots {
        println!(
            "{:<20} {:>12} {:>12} {:>12}",
            l.id.to_string(),
            human(l.logical_bytes),
            human(l.added_bytes),
            human(l.new_meta_bytes)
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn index(cli: &Cli, a: &IndexArgs) -> anyhow::Result<ExitCode> {
    match a.action {
        IndexAction::Rebuild => {
            let mut store = open_locked(cli)?;
            let r = store.rebuild_index()?;
            if cli.json {
                print_json(
                    &json!({"packs": r.packs_added, "snapshots": r.snapshots_added,
                    "unreadable_packs": r.unreadable_packs.iter().map(|(p, w)| json!({"pack": p.to_hex(), "error": w})).collect::<Vec<_>>()}),
                );
            } else if !cli.quiet {
                println!(
                    "index rebuilt: {} packs, {} snapshots",
                    r.packs_added, r.snapshots_added
                );
            }
            Ok(if r.unreadable_packs.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// Bytes as a short human string (binary units).
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
