//! `cairn repair`: print the plan, execute it, heal from the data path,
//! and report what is still damaged.

use std::process::ExitCode;

use cairn_store::check::{self, CheckOptions};
use cairn_store::format::SnapshotId;
use cairn_store::snapshot::{self, NoProgress, SnapshotOptions};
use cairn_store::{repair, HitkeepPaths};

use crate::args::{Cli, RepairArgs};
use crate::commands::{human, open_to_change};

pub fn repair(cli: &Cli, a: &RepairArgs) -> anyhow::Result<ExitCode> {
    let store = open_to_change(cli)?;
    // The healing snapshot's sources are checked before anything changes.
    let heal = a.data_path.as_ref().map(|data| SnapshotOptions {
        hitkeep: Some(HitkeepPaths::resolve(
            data.clone(),
            a.db.clone(),
            a.archive_path.clone(),
        )),
        full_read: true,
        ..Default::default()
    });
    if let Some(opts) = &heal {
        snapshot::checked_sources(&store, opts)?;
    }
    let plan = repair::plan(&store)?;
    let mut lines = Vec::new();
    lines.push(format!(
        "{} packs read, {} damaged, {} chunks lost",
        plan.packs_read,
        plan.packs.len(),
        plan.lost_chunks()
    ));
    for p in &plan.packs {
        let kept: usize = p.keep.iter().map(|(_, c)| c.len()).sum();
        lines.push(format!(
            "pack {}: {}; keeps {kept} chunks, drops {}",
            p.pack,
            p.problem,
            p.lost.len()
        ));
    }
    for l in &lines {
        eprintln!("repair: {l}");
    }
    if a.dry_run {
        eprintln!("repair: dry run; nothing changed");
        return Ok(if plan.packs.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let written = repair::execute(&store, &plan)?;
    if !written.is_empty() {
        lines.push(format!(
            "{} packs rewritten without the damaged chunks",
            written.len()
        ));
    }
    if let Some(opts) = &heal {
        let report = snapshot::snapshot(&store, opts, &NoProgress)?;
        lines.push(format!(
            "healing snapshot {} re-read {} and stored {} of chunks that were missing or new",
            report.manifest.id,
            human(report.manifest.stats.bytes_read),
            human(report.manifest.stats.new_data_bytes)
        ));
    }
    let after = check::check(&store, &CheckOptions::default(), &NoProgress)?;
    for s in &after.damaged_snapshots {
        if let Some(e) = &s.error {
            lines.push(format!("still damaged: snapshot {}: {e}", s.id));
        }
        for f in &s.files {
            lines.push(format!(
                "still damaged: snapshot {}: {}",
                s.id,
                f.display_path()
            ));
        }
    }
    if after.is_clean() {
        lines.push("every snapshot is whole".into());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let name = SnapshotId::from_unix(now).to_string();
    let report_path = repair::write_report(&store, &name, &(lines.join("\n") + "\n"))?;
    for l in &lines[1 + plan.packs.len()..] {
        println!("repair: {l}");
    }
    println!("repair: report written to {}", report_path.display());
    Ok(if after.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
