//! `cairn replicate` (plan, print, send) and `cairn unlock` for the remote
//! stores it writes.

use std::process::ExitCode;

use serde_json::json;

use cairn_store::prune;
use cairn_store::replicate::{self, ReplicateOptions};

use crate::args::{Cli, ReplicateArgs};
use anyhow::Context;
use cairn_remote::Location;
use cairn_store::lock::StoreLock;

use crate::commands::{
    human, location, lock_options, print_json, remote_lock, retry_policy, store_files,
    store_location,
};
use crate::progress::Bar;

pub fn replicate(cli: &Cli, a: &ReplicateArgs) -> anyhow::Result<ExitCode> {
    let source_loc = store_location(cli)?;
    let dest_loc = location(cli, &a.to)?;
    if dest_loc.overlaps(&source_loc) {
        anyhow::bail!(
            "--to {}: that is the store itself, or inside it, or holds it",
            a.to
        );
    }
    let source = store_files(cli, &source_loc)?;
    // A local source's packs must not be pruned away while they are sent.
    let _prune_lock = match source.remote() {
        None => Some(prune::hold_prune_lock(
            &source,
            "a prune or purge is running (replicate waits for none)",
        )?),
        Some(_) => None,
    };
    // Everything that can be refused is, before the destination is touched.
    let snapshots = if a.snapshot.is_empty() {
        None
    } else {
        let mut ids = Vec::new();
        for s in &a.snapshot {
            ids.push(source.resolve(s)?);
        }
        Some(ids)
    };
    if let Location::Local(path) = &dest_loc {
        match std::fs::metadata(path) {
            Ok(m) if !m.is_dir() => anyhow::bail!("--to {}: not a directory", a.to),
            // A replication stopped before it sent the config left only
            // its lock file and temp directory: that one is resumed.
            Ok(_)
                if !path.join("config").exists()
                    && std::fs::read_dir(path)
                        .with_context(|| format!("cannot read {}", path.display()))?
                        .any(|e| {
                            e.map_or(true, |e| e.file_name() != "lock" && e.file_name() != "tmp")
                        }) =>
            {
                anyhow::bail!(
                    "--to {}: a directory that is neither empty nor a cairn store",
                    a.to
                )
            }
            _ => {}
        }
    }
    let dest = cairn_remote::open(&dest_loc, &retry_policy(cli))?;
    // The destination's writers take its lock: a directory's lock file,
    // or a remote store's lock object.
    let _dest_lock: Box<dyn std::any::Any> = match &dest_loc {
        Location::Local(path) if !a.dry_run => {
            std::fs::create_dir_all(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            Box::new(StoreLock::acquire(path, &lock_options(cli)?)?)
        }
        Location::S3(_) if !a.dry_run => Box::new(remote_lock(cli, dest.clone())?),
        _ => Box::new(()),
    };
    let started = std::time::Instant::now();
    let plan = replicate::plan(&source, dest.as_ref(), &ReplicateOptions { snapshots })?;
    let report = if a.dry_run {
        None
    } else {
        let bar = Bar::counting(cli.quiet || cli.json, "replicate", "packs");
        let r = replicate::execute(
            &source,
            dest.as_ref(),
            &plan,
            usize::from(a.jobs),
            a.verify,
            &bar,
        );
        bar.finish();
        Some(r?)
    };
    let seconds = started.elapsed().as_secs_f64();
    let sent = report.as_ref().map_or(0, |r| r.bytes_sent);
    if cli.json {
        print_json(&json!({
            "source": source.location(),
            "destination": plan.destination,
            "dry_run": a.dry_run,
            "snapshots": plan.snapshots.iter().map(|(id, _)| id.to_string()).collect::<Vec<_>>(),
            "snapshots_already_there": plan.already_there.len(),
            "packs": plan.packs.len(),
            "pack_bytes": plan.pack_bytes(),
            "packs_already_there": plan.packs_present,
            "bytes_sent": sent,
            "verified_objects": report.as_ref().map_or(0, |r| r.verified),
            "seconds": seconds,
        }));
    } else if !cli.quiet {
        let verb = if a.dry_run { "would send" } else { "sent" };
        println!(
            "{verb} {} snapshots ({} already there), {} packs of {} ({} needed packs already there) to {} in {:.2}s{}",
            plan.snapshots.len(),
            plan.already_there.len(),
            plan.packs.len(),
            human(plan.pack_bytes()),
            plan.packs_present,
            plan.destination,
            seconds,
            match &report {
                Some(r) if a.verify => format!(", {} objects read back and verified", r.verified),
                _ => String::new(),
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn unlock(cli: &Cli) -> anyhow::Result<ExitCode> {
    let loc = store_location(cli)?;
    if let Location::Local(path) = &loc {
        println!(
            "{} is a local store: its lock is released by the system when its holder ends; nothing to remove",
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let backend = cairn_remote::open(&loc, &retry_policy(cli))?;
    match cairn_store::lock::RemoteLock::force_release(backend.as_ref())? {
        Some(holder) => println!("removed the lock of {} held by {holder}", loc.display()),
        None => println!("{} is not locked", loc.display()),
    }
    Ok(ExitCode::SUCCESS)
}
