//! `cairn drill` and `cairn drills`: run a restore drill (the library
//! restores, checks and records; this prints), and list the records.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::NonEmptyStringValueParser;
use clap::Args;
use serde_json::json;

use cairn_store::drill::{self, DrillOptions, DrillRecord, StepStatus};

use crate::args::{seconds, tenant_uuid, Cli};
use crate::commands::open;
use crate::progress::Bar;

/// `drill` arguments.
#[derive(Args, Debug)]
pub struct DrillArgs {
    /// Snapshot id (2026-03-08T120000Z) or `latest`.
    #[arg(long, default_value = "latest")]
    pub snapshot: String,
    /// Restore into this directory (absent or empty) instead of a fresh
    /// temporary one.
    #[arg(long, value_name = "DIR")]
    pub target: Option<PathBuf>,
    /// Keep the restored directory afterwards.
    #[arg(long)]
    pub keep: bool,
    /// An external check run on each restored database, `{db}` replaced by
    /// its path (for an imported backup run: each export directory), e.g.
    /// `duckdb -readonly {db} 'PRAGMA database_size'`; it fails the drill
    /// when it exits non-zero.
    #[arg(long, value_name = "CMD")]
    pub validate_cmd: Option<String>,
    /// How long one run of --validate-cmd may take.
    #[arg(long, default_value = "600", value_name = "SECS", value_parser = positive_seconds)]
    pub validate_timeout: Duration,
    /// The HitKeep version drilled, for the record [default: the
    /// snapshot's hitkeep_version label].
    #[arg(long, value_name = "VERSION", value_parser = NonEmptyStringValueParser::new())]
    pub hitkeep_version: Option<String>,
    /// The default tenant's id (found offline only when its archives tell).
    #[arg(long, value_name = "UUID", value_parser = tenant_uuid)]
    pub default_tenant: Option<String>,
}

/// A timeout: seconds, more than 0.
fn positive_seconds(s: &str) -> Result<Duration, String> {
    match seconds(s)? {
        d if d.is_zero() => Err("a timeout must be more than 0 seconds".into()),
        d => Ok(d),
    }
}

pub fn drill(cli: &Cli, a: &DrillArgs) -> anyhow::Result<ExitCode> {
    // The store is open (and locked) only to restore and to record.
    let prepared = {
        let store = open(cli)?;
        let opts = DrillOptions {
            snapshot: store.resolve(&a.snapshot)?,
            target: a.target.clone(),
            keep: a.keep,
            validate_cmd: a.validate_cmd.clone(),
            validate_timeout: a.validate_timeout,
            hitkeep_version: a.hitkeep_version.clone(),
            default_tenant: a.default_tenant.clone(),
        };
        let bar = Bar::new(cli.quiet || cli.json, "restore");
        let prepared = drill::prepare(&store, &opts, &bar);
        bar.finish();
        prepared?
    };
    let mut record = drill::verify(prepared);
    // A drill of a remote store (restoring from off-host), or of a local
    // one this process may not write, is run and reported, but not
    // recorded: cairn writes remote stores only by replicating to them.
    let saved = match crate::commands::store_location(cli)? {
        cairn_remote::Location::Local(path)
            if cairn_store::StoreFiles::read_only_reason(&path).is_none() =>
        {
            // Recording waits for a snapshot or prune holding the store
            // (an hour at most), so a long drill's result is not lost to a
            // busy store.
            let mut lock = crate::commands::lock_options(cli)?;
            lock.wait = lock.wait.max(Duration::from_secs(3600));
            let store = cairn_store::Store::open_with(&path, &lock)?;
            Some(drill::save(&store, &mut record)?)
        }
        _ => None,
    };
    if cli.json {
        let mut v = serde_json::to_value(&record)?;
        v["record_path"] = json!(saved);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if !cli.quiet {
        print_record(&record);
        match &saved {
            Some(p) => println!("recorded as {}", p.display()),
            None => println!(
                "not recorded: the store is remote or read-only to this process (record drills in a local store you can write)"
            ),
        }
    }
    if cli.quiet && !cli.json && !record.passed {
        // --quiet prints nothing but errors, and a failed drill is one.
        eprintln!(
            "cairn: error: drill {} of snapshot {} FAILED: {}",
            record.id,
            record.snapshot,
            failed_steps(&record).join(", ")
        );
    }
    Ok(if record.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The names of a drill's failed steps.
fn failed_steps(r: &DrillRecord) -> Vec<&str> {
    r.steps
        .iter()
        .filter(|s| s.status == StepStatus::Failed)
        .map(|s| s.name.as_str())
        .collect()
}

fn status_word(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Passed => "PASS",
        StepStatus::Failed => "FAIL",
        StepStatus::Skipped => "skip",
    }
}

fn print_record(r: &DrillRecord) {
    println!(
        "drill {} of snapshot {}: {} in {:.2}s (cairn {}, HitKeep {}, DuckDB {})",
        r.id,
        r.snapshot,
        if r.passed { "PASSED" } else { "FAILED" },
        r.duration_secs,
        r.cairn_version,
        r.hitkeep_version.as_deref().unwrap_or("unknown"),
        if r.duckdb_versions.is_empty() {
            "-".to_string()
        } else {
            r.duckdb_versions.join(", ")
        }
    );
    println!(
        "target {}{}",
        r.target,
        if r.kept { " (kept)" } else { " (removed)" }
    );
    for s in &r.steps {
        println!("  {} {:<18} {}", status_word(s.status), s.name, s.detail);
        for p in &s.problems {
            println!("       - {p}");
        }
    }
}

pub fn drills(cli: &Cli) -> anyhow::Result<ExitCode> {
    let store = open(cli)?;
    let drill::DrillList {
        records,
        unreadable,
    } = drill::list(&store)?;
    for (path, why) in &unreadable {
        eprintln!(
            "cairn: warning: {}: not a readable drill record: {why}",
            path.display()
        );
    }
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&records)?);
        return Ok(ExitCode::SUCCESS);
    }
    if !cli.quiet {
        println!(
            "{:<20} {:<20} {:<7} {:>9} {:<10} target / failed steps",
            "drill", "snapshot", "result", "seconds", "hitkeep"
        );
    }
    for r in &records {
        let failed = failed_steps(r);
        println!(
            "{:<20} {:<20} {:<7} {:>9.2} {:<10} {}{}",
            r.id,
            r.snapshot,
            if r.passed { "passed" } else { "FAILED" },
            r.duration_secs,
            r.hitkeep_version.as_deref().unwrap_or("-"),
            r.target,
            if failed.is_empty() {
                String::new()
            } else {
                format!("  failed: {}", failed.join(", "))
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
