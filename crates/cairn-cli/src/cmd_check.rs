//! `cairn check`: runs the library's integrity check and prints its report.
//!
//! Exit codes: 0 clean, 1 damage found, 2 the check could not run (no
//! store, store locked, I/O or index failure).

use std::process::ExitCode;

use serde_json::json;

use cairn_store::check::{self, CheckOptions, CheckReport, DataSelection};
use cairn_store::{Store, StoreError};

use crate::args::{CheckArgs, Cli};
use crate::commands::human;
use crate::progress::Bar;

/// Exit code when the check could not run.
const COULD_NOT_RUN: u8 = 2;

/// Parses `--read-data-subset` (for clap).
pub fn parse_subset(s: &str) -> Result<DataSelection, String> {
    DataSelection::parse(s)
}

fn could_not_run(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("cairn: error: check could not run: {e}");
    ExitCode::from(COULD_NOT_RUN)
}

/// The store failed before the check could finish; a failing index gets
/// the remedy, since it is only a cache.
fn store_failed(store: &std::path::Path, e: StoreError) -> ExitCode {
    match e {
        StoreError::Index(_) => could_not_run(format!(
            "{e} (the index is only a cache: remove {} and cairn rebuilds it)",
            store.join("index").display()
        )),
        e => could_not_run(e),
    }
}

/// `cairn check`.
pub fn check(cli: &Cli, a: &CheckArgs) -> anyhow::Result<ExitCode> {
    let files = match crate::commands::store_location(cli)
        .and_then(|loc| crate::commands::store_files(cli, &loc))
    {
        Ok(f) => f,
        Err(e) => return Ok(could_not_run(format!("{e:#}"))),
    };
    let lock = match crate::commands::lock_options(cli) {
        Ok(l) => l,
        Err(e) => return Ok(could_not_run(format!("{e:#}"))),
    };
    let path = files.root().to_owned();
    let path = &path;
    let store = match Store::open_files(files, &lock) {
        Ok(s) => s,
        Err(e) => return Ok(store_failed(path, e)),
    };
    for w in store.lock().warnings() {
        eprintln!("cairn: warning: {w}");
    }
    let sync = store.index_sync();
    if !cli.quiet && !cli.json && (sync.rebuilt || sync.packs_added > 0) {
        eprintln!(
            "cairn: index {} ({} packs added, {} snapshots cataloged)",
            if sync.rebuilt { "rebuilt" } else { "updated" },
            sync.packs_added,
            sync.snapshots_added
        );
    }
    let read_data = match a.read_data_subset {
        Some(sel) => sel,
        None if a.read_data => DataSelection::All,
        None => DataSelection::None,
    };
    let bar = Bar::new(cli.quiet || cli.json, "check");
    let started = std::time::Instant::now();
    let report = check::check(&store, &CheckOptions { read_data }, &bar);
    bar.finish();
    let report = match report {
        Ok(r) => r,
        Err(e) => return Ok(store_failed(path, e)),
    };
    let seconds = started.elapsed().as_secs_f64();
    if cli.json {
        print_json(&report, read_data, seconds);
    } else {
        print_text(&report, read_data, seconds, cli.quiet);
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn selection_text(sel: DataSelection) -> String {
    match sel {
        DataSelection::None => "structure only".into(),
        DataSelection::All => "all data".into(),
        DataSelection::Slice { n, m } => format!("data subset {n}/{m}"),
        DataSelection::Percent(p) => format!("data subset {p}%"),
    }
}

fn print_json(r: &CheckReport, sel: DataSelection, seconds: f64) {
    let v = json!({
        "status": if r.is_clean() { "clean" } else { "damaged" },
        "read_data": selection_text(sel),
        "snapshots_checked": r.snapshots_checked,
        "packs": r.packs,
        "packs_checked": r.packs_checked,
        "bytes_checked": r.bytes_checked,
        "chunks_checked": r.chunks_checked,
        "tree_nodes": r.tree_nodes,
        "list_nodes": r.list_nodes,
        "data_refs": r.data_refs,
        "damaged_packs": r.damaged_packs.iter().map(|p| json!({
            "pack": p.pack.to_hex(),
            "error": p.error.to_string(),
            "unreadable": p.unreadable,
            "damaged_chunks": p.damaged_chunks,
        })).collect::<Vec<_>>(),
        "damaged_snapshots": r.damaged_snapshots.iter().map(|s| json!({
            "id": s.id,
            "files": s.files.iter().map(|f| f.display_path()).collect::<Vec<_>>(),
            "error": s.error.as_ref().map(|e| e.to_string())
                .or_else(|| s.files.first().map(|f| format!("{}: {}", f.display_path(), f.error))),
            "details": s.files.iter().map(|f| json!({
                "path": f.display_path(),
                "directory": f.is_dir,
                "error": f.error.to_string(),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "seconds": seconds,
    });
    println!("{}", serde_json::to_string_pretty(&v).expect("json"));
}

fn print_text(r: &CheckReport, sel: DataSelection, seconds: f64, quiet: bool) {
    for p in &r.damaged_packs {
        let what = if p.unreadable {
            "unreadable".to_string()
        } else if p.damaged_chunks > 0 {
            format!("{} damaged chunks", p.damaged_chunks)
        } else {
            "damaged".to_string()
        };
        println!("damaged pack {} ({what}): {}", p.pack, p.error);
    }
    for s in &r.damaged_snapshots {
        match &s.error {
            Some(e) => println!("damaged snapshot {}: {e}", s.id),
            None => {
                println!(
                    "damaged snapshot {}: {} {} cannot be restored",
                    s.id,
                    s.files.len(),
                    if s.files.len() == 1 { "path" } else { "paths" }
                );
                for f in &s.files {
                    println!("  {}: {}", f.display_path(), f.error);
                }
            }
        }
    }
    if quiet && r.is_clean() {
        return;
    }
    let data = if r.packs_checked > 0 || sel != DataSelection::None {
        format!(
            ", {} of {} packs read ({}, {})",
            r.packs_checked,
            r.packs,
            human(r.bytes_checked),
            selection_text(sel)
        )
    } else {
        format!(", {} packs (structure only)", r.packs)
    };
    println!(
        "checked {} snapshots: {} directory nodes, {} list nodes, {} chunk references, {} chunks verified{data} in {seconds:.2}s",
        r.snapshots_checked, r.tree_nodes, r.list_nodes, r.data_refs, r.chunks_checked,
    );
    if r.is_clean() {
        println!("no damage found");
    } else {
        let files: usize = r.damaged_snapshots.iter().map(|s| s.files.len()).sum();
        println!(
            "store is DAMAGED: {} damaged packs, {} damaged snapshots, {} damaged paths",
            r.damaged_packs.len(),
            r.damaged_snapshots.len(),
            files
        );
    }
}
