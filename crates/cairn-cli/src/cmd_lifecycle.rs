//! `forget`, `policy`, `prune`, `purge-tenant`: parse the options, call
//! the engine, print the plan and what was done.

use std::process::ExitCode;

use anyhow::bail;
use cairn_store::forget;
use cairn_store::format::PackId;
use cairn_store::prune::{self, PackAction, PruneOptions, PrunePlan, PruneReport};
use cairn_store::purge::{self, PurgePlan, PurgeProof};
use cairn_store::retention::{ForgetPlan, Period, Policy};
use cairn_store::{LockOptions, Store, StoreFiles};
use serde_json::json;

use crate::args::{Cli, ForgetArgs, PolicyArgs, PruneArgs, PurgeTenantArgs, RetentionArgs};
use crate::commands::{human, lock_options, open, open_to_change, print_json, store_path};

fn policy_of(r: &RetentionArgs) -> Policy {
    let periods = [
        (Period::Hourly, r.keep_hourly),
        (Period::Daily, r.keep_daily),
        (Period::Weekly, r.keep_weekly),
        (Period::Monthly, r.keep_monthly),
        (Period::Yearly, r.keep_yearly),
    ];
    Policy {
        last: r.keep_last,
        periods: periods
            .into_iter()
            .filter_map(|(p, n)| n.map(|n| (p, n)))
            .collect(),
        within: r.keep_within,
        max_age: r.max_age,
    }
}

/// The unix time now.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn plan_json(policy: &Policy, plan: &ForgetPlan, dry_run: bool) -> serde_json::Value {
    json!({
        "policy": policy.describe(),
        "dry_run": dry_run,
        "keep": plan.keep.iter().map(|(id, why)| json!({
            "id": id.to_string(),
            "kept_by": why.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "remove": plan.remove.iter().map(|(id, expired)| json!({
            "id": id.to_string(),
            "expired_by_max_age": expired,
        })).collect::<Vec<_>>(),
    })
}

fn print_plan(policy: &Policy, plan: &ForgetPlan, dry_run: bool) {
    println!("policy: {}", policy.describe());
    for (id, why) in &plan.keep {
        let why: Vec<String> = why.iter().map(|r| r.to_string()).collect();
        println!("keep    {id}  ({})", why.join(", "));
    }
    for (id, expired) in &plan.remove {
        let note = if *expired {
            "  (expired by max-age)"
        } else {
            ""
        };
        println!(
            "{}  {id}{note}",
            if dry_run { "would remove" } else { "remove" }
        );
    }
    println!(
        "{} kept, {} {}",
        plan.keep.len(),
        plan.remove.len(),
        if dry_run {
            "would be removed (dry run)"
        } else {
            "removed"
        }
    );
}

/// Applies `policy` (or the stored one) to `store` and prints the plan.
pub fn apply(cli: &Cli, store: &Store, given: Option<Policy>, dry_run: bool) -> anyhow::Result<()> {
    let policy = match given.filter(|p| !p.is_empty()) {
        Some(p) => p,
        None => match forget::stored_policy(store)? {
            Some(p) => p,
            None => bail!("no retention rule given and no policy stored: pass --keep-last, --keep-daily, ... or set one with `cairn policy`"),
        },
    };
    // A remote store is locked before the plan: nothing else may write
    // to it between the plan and the deletions.
    let remote_lock = match store.files().remote() {
        Some(b) if !dry_run => Some(crate::commands::remote_lock(cli, b.clone())?),
        _ => None,
    };
    let plan = forget::plan(store, &policy, now())?;
    if !dry_run {
        match &remote_lock {
            Some(lock) => forget::execute_remote(store, &plan, lock)?,
            None => forget::execute(store, &plan)?,
        };
    }
    if cli.json {
        print_json(&plan_json(&policy, &plan, dry_run));
    } else if !cli.quiet {
        print_plan(&policy, &plan, dry_run);
    }
    Ok(())
}

pub fn forget(cli: &Cli, a: &ForgetArgs) -> anyhow::Result<ExitCode> {
    let store = if a.dry_run {
        open(cli)?
    } else {
        open_to_change(cli)?
    };
    apply(cli, &store, Some(policy_of(&a.rules)), a.dry_run)?;
    Ok(ExitCode::SUCCESS)
}

pub fn policy(cli: &Cli, a: &PolicyArgs) -> anyhow::Result<ExitCode> {
    let given = policy_of(&a.rules);
    let store = if a.clear || !given.is_empty() {
        open_to_change(cli)?
    } else {
        open(cli)?
    };
    if a.clear {
        forget::store_policy(&store, None)?;
    } else if !given.is_empty() {
        forget::store_policy(&store, Some(&given))?;
    }
    let stored = forget::stored_policy(&store)?;
    if cli.json {
        print_json(&json!({ "policy": stored.as_ref().map(Policy::describe) }));
    } else {
        match stored {
            Some(p) => println!("retention policy: {}", p.describe()),
            None => println!("no retention policy stored"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// For `list`: the rules that keep each snapshot under the stored policy
/// (empty when none is stored).
pub fn kept_by(store: &Store) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let Some(policy) = forget::stored_policy(store)? else {
        return Ok(Default::default());
    };
    let plan = forget::plan(store, &policy, now())?;
    let mut out: std::collections::BTreeMap<String, String> = plan
        .keep
        .iter()
        .map(|(id, why)| {
            let why: Vec<String> = why.iter().map(|r| r.to_string()).collect();
            (id.to_string(), why.join(","))
        })
        .collect();
    for (id, _) in &plan.remove {
        out.insert(id.to_string(), "(forget)".into());
    }
    Ok(out)
}

pub fn prune(cli: &Cli, a: &PruneArgs) -> anyhow::Result<ExitCode> {
    if !(0.0..=100.0).contains(&a.max_unused) {
        bail!(
            "--max-unused {}: give a percentage from 0 to 100",
            a.max_unused
        );
    }
    let location = crate::commands::store_location(cli)?;
    if let (cairn_remote::Location::Local(path), false) = (&location, a.dry_run) {
        StoreFiles::require_writable_at(path, "prune")?;
    }
    let files = crate::commands::store_files(cli, &location)?;
    let _prune_lock = prune::prune_lock(&files)?;
    // A remote store is locked for the whole prune (its writers are
    // replicate, forget and prune, which all take that lock).
    let remote_lock = match files.remote() {
        Some(b) if !a.dry_run => Some(crate::commands::remote_lock(cli, b.clone())?),
        _ => None,
    };
    let opts = PruneOptions {
        max_unused_percent: a.max_unused,
        max_repack_bytes: a.max_repack_bytes,
    };
    let plan = prune::plan(&files, &opts)?;
    let report = match (&remote_lock, a.dry_run) {
        (_, true) => None,
        (Some(lock), false) => Some(prune::execute_remote(&files, &plan, lock)?),
        (None, false) => Some(prune::execute(&files, &plan, &sweep_lock(cli)?)?),
    };
    print_prune(cli, &plan, report.as_ref());
    Ok(ExitCode::SUCCESS)
}

/// The store lock for a prune's final sweep: `--lock-wait`, or up to an
/// hour by default (a snapshot running then finishes first).
fn sweep_lock(cli: &Cli) -> anyhow::Result<LockOptions> {
    let mut lock = lock_options(cli)?;
    if lock.wait.is_zero() {
        lock.wait = std::time::Duration::from_secs(3600);
    }
    Ok(lock)
}

fn print_prune(cli: &Cli, plan: &PrunePlan, report: Option<&PruneReport>) {
    let ids = |v: &[PackId]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    if cli.json {
        let mut v = json!({
            "dry_run": report.is_none(),
            "snapshots": plan.snapshots.len(),
            "packs": plan.packs.len(),
            "packs_to_delete": plan.count(PackAction::Delete),
            "packs_to_rewrite": plan.count(PackAction::Rewrite),
            "bytes_to_delete": plan.delete_bytes(),
            "bytes_to_rewrite": plan.rewrite_bytes(),
            "bytes_to_copy": plan.copy_bytes(),
            "expected_freed": plan.expected_freed(),
            "unused_before": plan.unused_now(),
            "unused_after": plan.unused_after(),
        });
        if let Some(r) = report {
            v["packs_deleted"] = json!(ids(&r.packs_deleted));
            v["packs_written"] = json!(ids(&r.packs_written));
            v["packs_spared"] = json!(ids(&r.packs_spared));
            v["late_snapshots"] = json!(r
                .late_snapshots
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>());
            v["pack_bytes_before"] = json!(r.pack_bytes_before);
            v["pack_bytes_after"] = json!(r.pack_bytes_after);
            v["freed"] = json!(r.pack_bytes_before.saturating_sub(r.pack_bytes_after));
        }
        print_json(&v);
        return;
    }
    if cli.quiet {
        return;
    }
    println!(
        "{} snapshots, {} packs ({} unused)",
        plan.snapshots.len(),
        plan.packs.len(),
        human(plan.unused_now())
    );
    for p in &plan.packs {
        let what = match p.action {
            PackAction::Keep => continue,
            PackAction::Delete => "delete ",
            PackAction::Rewrite => "rewrite",
        };
        println!(
            "  {what} {}  {} ({} live in {} chunks, {} unused)",
            p.pack.short(),
            human(p.len),
            human(p.live_bytes),
            p.live_chunks,
            human(p.dead_bytes)
        );
    }
    println!(
        "{} {} packs ({}), {} {} packs ({}, copying {} live); frees about {}, leaves {} unused",
        if report.is_some() {
            "deleted"
        } else {
            "would delete"
        },
        plan.count(PackAction::Delete),
        human(plan.delete_bytes()),
        if report.is_some() {
            "rewrote"
        } else {
            "would rewrite"
        },
        plan.count(PackAction::Rewrite),
        human(plan.rewrite_bytes()),
        human(plan.copy_bytes()),
        human(plan.expected_freed()),
        human(plan.unused_after()),
    );
    if let Some(r) = report {
        if !r.late_snapshots.is_empty() {
            println!(
                "{} snapshots were taken during the prune; {} packs they need were kept",
                r.late_snapshots.len(),
                r.packs_spared.len()
            );
        }
        println!(
            "packs: {} -> {} (freed {})",
            human(r.pack_bytes_before),
            human(r.pack_bytes_after),
            human(r.pack_bytes_before.saturating_sub(r.pack_bytes_after))
        );
    }
}

pub fn purge_tenant(cli: &Cli, a: &PurgeTenantArgs) -> anyhow::Result<ExitCode> {
    purge::check_tenant_id(&a.tenant)?;
    let path = store_path(cli)?;
    StoreFiles::require_writable_at(&path, "purge-tenant")?;
    let files = StoreFiles::open(&path)?;
    let _prune_lock = prune::prune_lock(&files)?;
    let started = now();
    let mut plan = {
        let store = open(cli)?;
        let mut plan = purge::plan(&store, &a.tenant, &a.sites)?;
        if a.dry_run {
            print_purge_plan(cli, &plan);
            return Ok(ExitCode::SUCCESS);
        }
        purge::rewrite(&store, &mut plan)?;
        plan
    };
    // Even when no snapshot holds the tenant (any more), the prune and the
    // proof run: they finish a purge that was interrupted.
    let (report, mut proof) = purge::prune_and_prove(&files, &plan, &sweep_lock(cli)?)?;
    let path = {
        let store = open(cli)?;
        let again = purge::plan(&store, &a.tenant, &a.sites)?;
        proof.snapshots_holding = again.snapshots.iter().map(|s| s.old).collect();
        proof
            .snapshots_holding
            .extend(again.resumed.iter().map(|(old, _)| *old));
        let text = purge_report_text(&plan, &report, &proof, started);
        let name = format!("{}-{}", cairn_store::format::SnapshotId(started), a.tenant);
        let path = store.write_report("purges", &name, &text)?;
        if !cli.json && !cli.quiet {
            print!("{text}");
            println!("report stored at {}", path.display());
        }
        path
    };
    plan.snapshots.sort_by_key(|s| s.old);
    if cli.json {
        print_json(&json!({
            "tenant": plan.target.tenant,
            "sites": plan.target.sites,
            "snapshots": plan.snapshots.iter().map(|s| json!({
                "old": s.old.to_string(),
                "new": s.new.map(|n| n.to_string()),
                "files_dropped": s.dropped.len(),
                "bytes_dropped": s.dropped.iter().map(|d| d.size).sum::<u64>(),
            })).collect::<Vec<_>>(),
            "resumed": plan.resumed.iter().map(|(o, n)| json!({"old": o.to_string(), "new": n.to_string()})).collect::<Vec<_>>(),
            "packs_deleted": report.packs_deleted.len(),
            "packs_written": report.packs_written.len(),
            "pack_bytes_before": report.pack_bytes_before,
            "pack_bytes_after": report.pack_bytes_after,
            "bytes_removed": report.pack_bytes_before.saturating_sub(report.pack_bytes_after),
            "tenant_chunks": proof.tenant_chunks,
            "shared_chunks": proof.shared_chunks,
            "packs_read": proof.packs_read,
            "still_stored": proof.still_stored.len(),
            "snapshots_holding": proof.snapshots_holding.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "verified": proof.verified(),
            "report": path.display().to_string(),
        }));
    }
    if proof.verified() {
        Ok(ExitCode::SUCCESS)
    } else {
        bail!(
            "purge of tenant {} is not complete ({} unreferenced chunks still stored, {} snapshots still hold it); see {}",
            a.tenant,
            proof.still_stored.len(),
            proof.snapshots_holding.len(),
            path.display()
        )
    }
}

fn print_purge_plan(cli: &Cli, plan: &PurgePlan) {
    if cli.json {
        print_json(&json!({
            "dry_run": true,
            "tenant": plan.target.tenant,
            "sites": plan.target.sites,
            "snapshots": plan.snapshots.iter().map(|s| json!({
                "old": s.old.to_string(),
                "files": s.dropped.iter().map(|d| json!({"root": d.root, "path": d.path, "size": d.size})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "tenant_chunks": plan.tenant_chunks().len(),
        }));
        return;
    }
    println!(
        "tenant {} (sites: {})",
        plan.target.tenant,
        plan.target
            .sites
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    );
    for s in &plan.snapshots {
        println!("would rewrite snapshot {} without:", s.old);
        for d in &s.dropped {
            println!("  {}/{} ({})", d.root, d.path, human(d.size));
        }
    }
    println!(
        "{} snapshots would be rewritten; {} chunks referenced by the tenant (dry run: nothing changed)",
        plan.snapshots.len(),
        plan.tenant_chunks().len()
    );
}

fn purge_report_text(
    plan: &PurgePlan,
    r: &PruneReport,
    proof: &PurgeProof,
    started: i64,
) -> String {
    use std::fmt::Write;
    let mut t = String::new();
    let _ = writeln!(t, "cairn purge-tenant report");
    let _ = writeln!(t, "tenant: {}", plan.target.tenant);
    let sites: Vec<_> = plan.target.sites.iter().cloned().collect();
    let _ = writeln!(
        t,
        "sites: {}",
        if sites.is_empty() {
            "-".into()
        } else {
            sites.join(", ")
        }
    );
    let _ = writeln!(
        t,
        "started: {}  finished: {}",
        cairn_store::format::SnapshotId(started),
        cairn_store::format::SnapshotId(now())
    );
    let _ = writeln!(
        t,
        "snapshots rewritten: {}",
        plan.snapshots.len() + plan.resumed.len()
    );
    for s in &plan.snapshots {
        let new = s.new.map_or("-".into(), |n| n.to_string());
        let bytes: u64 = s.dropped.iter().map(|d| d.size).sum();
        let _ = writeln!(
            t,
            "  {} -> {}: {} files dropped ({})",
            s.old,
            new,
            s.dropped.len(),
            human(bytes)
        );
        for d in &s.dropped {
            let _ = writeln!(t, "    {}/{} ({})", d.root, d.path, human(d.size));
        }
    }
    for (old, new) in &plan.resumed {
        let _ = writeln!(
            t,
            "  {old} -> {new}: rewritten by an earlier, interrupted purge"
        );
    }
    let _ = writeln!(
        t,
        "packs: {} deleted, {} written; pack bytes {} -> {} ({} physically removed)",
        r.packs_deleted.len(),
        r.packs_written.len(),
        r.pack_bytes_before,
        r.pack_bytes_after,
        r.pack_bytes_before.saturating_sub(r.pack_bytes_after)
    );
    let _ = writeln!(
        t,
        "tenant chunks: {} ({} also used by remaining snapshots, kept)",
        proof.tenant_chunks, proof.shared_chunks
    );
    if proof.verified() {
        let _ = writeln!(
            t,
            "verified: read the trailers of all {} packs; no pack holds a chunk that no remaining snapshot references, and no snapshot holds a file of tenant {}",
            proof.packs_read, plan.target.tenant
        );
    } else {
        let _ = writeln!(
            t,
            "NOT VERIFIED: {} unreferenced chunks are still stored ({} of them the tenant's); {} snapshots still hold the tenant",
            proof.still_stored.len(),
            proof.tenant_still_stored,
            proof.snapshots_holding.len()
        );
        for (pack, chunk) in &proof.still_stored {
            let _ = writeln!(t, "  pack {pack}: chunk {chunk}");
        }
        for s in &proof.snapshots_holding {
            let _ = writeln!(t, "  snapshot {s} still holds files of the tenant");
        }
    }
    t
}
