//! `cairn import-hitkeep-backups` and `cairn restore --as-hitkeep-backup`:
//! HitKeep's built-in backups in and out (the library plans and writes;
//! this prints).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::json;

use cairn_store::import::{self, ImportOptions};

use crate::args::{Cli, RestoreArgs};
use crate::commands::{human, open};
use crate::progress::Bar;

/// `import-hitkeep-backups` arguments.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// HitKeep's backup path, holding shared/{ts}/ and tenants/{uuid}/{ts}/.
    #[arg(long, env = "HITKEEP_BACKUP_PATH", value_name = "BACKUP_PATH")]
    pub from: PathBuf,
    /// Leave out backup runs written less than SECS ago (HitKeep may still
    /// be writing them); a later import takes them.
    #[arg(long, default_value = "300", value_name = "SECS", value_parser = crate::args::seconds)]
    pub min_age: Duration,
    /// Show what would be imported and skipped; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn import(cli: &Cli, a: &ImportArgs) -> anyhow::Result<ExitCode> {
    let store = crate::commands::open_to_change(cli)?;
    let plan = import::plan(
        &store,
        &ImportOptions {
            from: a.from.clone(),
            min_age: a.min_age,
        },
    )?;
    if !cli.quiet && !cli.json {
        for (ts, why) in &plan.skipped {
            eprintln!("cairn: skip {ts}: {why}");
        }
    }
    let started = std::time::Instant::now();
    let report = if a.dry_run {
        import::ImportReport::default()
    } else {
        let bar = Bar::new(cli.quiet || cli.json, "import");
        let r = import::execute(&store, &plan, &bar);
        bar.finish();
        r?
    };
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "from": plan.from,
                "dry_run": a.dry_run,
                "to_import": plan.runs.iter().map(|r| r.ts.to_string()).collect::<Vec<_>>(),
                "imported": report.imported.iter().map(|r| json!({
                    "snapshot": r.manifest.id.to_string(),
                    "files": r.manifest.stats.files,
                    "logical_bytes": r.manifest.stats.logical_bytes,
                    "store_growth": r.store_growth,
                })).collect::<Vec<_>>(),
                "skipped": plan.skipped.iter().map(|(ts, why)| json!({"ts": ts, "reason": why})).collect::<Vec<_>>(),
                "seconds": started.elapsed().as_secs_f64(),
            }))?
        );
    } else if !cli.quiet {
        if a.dry_run {
            for r in &plan.runs {
                println!("would import {} ({} tenants)", r.ts, r.tenants.len());
            }
        }
        let logical: u64 = report
            .imported
            .iter()
            .map(|r| r.manifest.stats.logical_bytes)
            .sum();
        let growth: u64 = report.imported.iter().map(|r| r.store_growth).sum();
        for r in &report.imported {
            println!(
                "imported {}: {} files, {}, store grew {}",
                r.manifest.id,
                r.manifest.stats.files,
                human(r.manifest.stats.logical_bytes),
                human(r.store_growth)
            );
        }
        println!(
            "{} backup runs imported ({} in, store grew {}), {} skipped, in {:.2}s",
            report.imported.len(),
            human(logical),
            human(growth),
            plan.skipped.len(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn restore_as_backup(cli: &Cli, a: &RestoreArgs) -> anyhow::Result<ExitCode> {
    let target = a
        .target
        .as_ref()
        .context("--as-hitkeep-backup needs --target DIR")?;
    let store = open(cli)?;
    let id = store.resolve(&a.snapshot)?;
    let bar = Bar::new(cli.quiet || cli.json, "restore");
    let report = import::restore_as_backup(&store, id, target, a.overwrite, &bar);
    bar.finish();
    let report = report?;
    for (p, why) in &report.failed {
        eprintln!("cairn: error: {}: not restored: {why}", p.display());
    }
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "snapshot": id.to_string(),
                "target": target,
                "files": report.files,
                "bytes": report.bytes,
                "failed": report.failed.iter().map(|(p, w)| json!({"path": p, "error": w})).collect::<Vec<_>>(),
            }))?
        );
    } else if !cli.quiet {
        println!(
            "restored backup run {id} into {} in HitKeep's layout: {} files, {} verified{}",
            target.display(),
            report.files,
            human(report.bytes),
            if report.failed.is_empty() {
                String::new()
            } else {
                format!(", {} FAILED", report.failed.len())
            }
        );
        // The run's own {ts} (an import rewritten by a purge has another id).
        let ts = store
            .load_manifest(id)?
            .labels
            .get(import::LABEL_BACKUP_TS)
            .cloned()
            .unwrap_or_else(|| id.to_string());
        println!(
            "hitkeep recover restore-backup -from {} -snapshot {ts} ...",
            target.display()
        );
    }
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
