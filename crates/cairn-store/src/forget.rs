//! `cairn forget`: applies a retention policy to the store's snapshots.
//!
//! Forgetting removes manifests only (each removal is durable: unlink,
//! fsync of `snapshots/`); the chunks they alone referenced stay in their
//! packs until [`prune`](crate::prune) sweeps them. Plan, then execute, so
//! `--dry-run` prints exactly what execution would do.

use std::fs;

use crate::atomic;
use crate::error::{IoContext, Result, StoreError};
use crate::lock::RemoteLock;
use crate::retention::{ForgetPlan, Policy, POLICY_FILE};
use crate::store::Store;

/// The policy stored in the store, if any.
pub fn stored_policy(store: &Store) -> Result<Option<Policy>> {
    let path = store.files().store_dir().join(POLICY_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => Policy::decode(&text)
            .map(Some)
            .map_err(|detail| StoreError::Usage(format!("{}: {detail}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).at(&path),
    }
}

/// Stores `policy` in the store (replacing any), or removes the stored
/// policy when `policy` is `None`.
pub fn store_policy(store: &Store, policy: Option<&Policy>) -> Result<()> {
    store.files().require_local("policy")?;
    let path = store.root().join(POLICY_FILE);
    match policy {
        Some(p) => atomic::write_file(
            &store.root().join("tmp"),
            &path,
            p.encode().as_bytes(),
            true,
        )?,
        None => match fs::remove_file(&path) {
            Ok(()) => atomic::sync_dir(store.root())?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).at(&path),
        },
    }
    Ok(())
}

/// What `policy` does to the store's snapshots at unix time `now`.
pub fn plan(store: &Store, policy: &Policy, now: i64) -> Result<ForgetPlan> {
    if policy.is_empty() {
        return Err(StoreError::Usage(
            "no retention rule given (and none stored): pass at least one --keep-* or --max-age"
                .into(),
        ));
    }
    if policy.has_zero_count() {
        return Err(StoreError::Usage(
            "a keep count of 0 is refused (it would keep nothing); to remove every snapshot use --max-age".into(),
        ));
    }
    let ids: Vec<_> = store.manifest_ids()?.into_iter().collect();
    Ok(policy.plan(&ids, now))
}

/// Removes the manifests `plan` drops from a remote store, whose lock
/// `_lock` proves is held (no replication or prune runs meanwhile).
pub fn execute_remote(store: &Store, plan: &ForgetPlan, _lock: &RemoteLock) -> Result<usize> {
    store.files().require_writable("forget")?;
    let Some(b) = store.files().remote() else {
        return execute(store, plan);
    };
    for (id, _) in &plan.remove {
        b.delete(&crate::files::manifest_name(*id))?;
        store.index().remove_snapshot(*id)?;
    }
    store.index().flush()?;
    Ok(plan.remove.len())
}

/// Removes the snapshots `plan` drops. Returns how many were removed.
pub fn execute(store: &Store, plan: &ForgetPlan) -> Result<usize> {
    store.files().require_local("forget")?;
    for (id, _) in &plan.remove {
        store.remove_manifest(*id)?;
    }
    store.index().flush()?;
    Ok(plan.remove.len())
}
