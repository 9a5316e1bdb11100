//! `forget`, `policy`: parse the rules, call the engine, print the plan.

use std::process::ExitCode;

use anyhow::bail;
use cairn_store::forget;
use cairn_store::retention::{ForgetPlan, Period, Policy};
use cairn_store::Store;
use serde_json::json;

use crate::args::{Cli, ForgetArgs, PolicyArgs, RetentionArgs};
use crate::commands::{open, print_json};

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
    let plan = forget::plan(store, &policy, now())?;
    if !dry_run {
        forget::execute(store, &plan)?;
    }
    if cli.json {
        print_json(&plan_json(&policy, &plan, dry_run));
    } else if !cli.quiet {
        print_plan(&policy, &plan, dry_run);
    }
    Ok(())
}

pub fn forget(cli: &Cli, a: &ForgetArgs) -> anyhow::Result<ExitCode> {
    let store = open(cli)?;
    apply(cli, &store, Some(policy_of(&a.rules)), a.dry_run)?;
    Ok(ExitCode::SUCCESS)
}

pub fn policy(cli: &Cli, a: &PolicyArgs) -> anyhow::Result<ExitCode> {
    let store = open(cli)?;
    let given = policy_of(&a.rules);
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
