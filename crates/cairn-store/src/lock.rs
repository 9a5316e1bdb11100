//! The store lock: one process at a time has a store open.
//!
//! # Protocol
//!
//! * The lock is `flock(LOCK_EX | LOCK_NB)` on the file `STORE/lock`,
//!   taken by [`Store::open`](crate::Store::open) (and `init`) *before*
//!   the index is opened, and held for the whole life of the opened
//!   store. The kernel releases it when the process ends, however it ends,
//!   so the lock itself can never be stale. The lock file is never
//!   deleted (deleting a flock'ed file lets two processes lock two
//!   different files of the same name).
//! * Having taken the lock, the process writes a *lock record* into the
//!   file (truncate, write, fsync): pid, host name, the process's start
//!   time (`starttime` from `/proc/self/stat`, in clock ticks since boot)
//!   with the kernel's boot id (`/proc/sys/kernel/random/boot_id`), the
//!   command, and when the lock was taken. It is for people and for the
//!   next process, not for exclusion.
//! * On a clean release (the store is dropped) the record is truncated
//!   away before the file is closed. So an empty file means "released
//!   cleanly"; a record found right after taking the lock means its writer
//!   ended without releasing (killed, crashed, host rebooted).
//! * If the lock is taken, the opener fails at once with
//!   [`StoreError::Locked`] naming the holder from its record (pid, host,
//!   command, since when), or, with [`LockOptions::wait`], polls until the
//!   lock is free or the wait is over.
//! * A record left behind is checked before it is overwritten, and never
//!   silently: the same boot id means the same kernel, where flock is
//!   authoritative, so the record is stale, and the warning says why
//!   (the pid is gone, or now belongs to another process, or — odd but
//!   harmless — the process is alive but no longer holds the lock). The
//!   same host name with another boot id means the host rebooted since.
//!   A record from another host (a store on shared storage) cannot be
//!   checked from here: the lock was free, so we proceed, but warn naming
//!   that host.
//! * While the lock is held, nobody else writes to `STORE/tmp`, so temp
//!   files found there were left by a run that died: the opener removes
//!   them.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_format::SnapshotId;

use crate::error::{IoContext, Result, StoreError};

/// Name of the lock file in the store root.
pub const LOCK_FILE: &str = "lock";

const RECORD_HEADER: &str = "cairn lock record v1";

/// How long a lock held without a record is waited for even with no
/// `--lock-wait`.
const RECORDLESS_GRACE: Duration = Duration::from_millis(500);

/// How to take the store lock when opening a store.
#[derive(Clone, Debug, Default)]
pub struct LockOptions {
    /// How long to wait for another process to release the store; zero
    /// fails at once.
    pub wait: Duration,
    /// The command named in the lock record (default: the program name).
    pub command: Option<String>,
}

/// What a lock file says about the process that took the lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockRecord {
    /// Process id.
    pub pid: u32,
    /// Host name.
    pub host: String,
    /// Kernel boot id (empty if unknown).
    pub boot_id: String,
    /// The pid namespace (`/proc/self/ns/pid`; empty if unknown): two
    /// containers on one kernel share the boot id but not their pids.
    pub pid_ns: String,
    /// Process start time in clock ticks after boot (0 if unknown).
    pub start_ticks: u64,
    /// The command it runs (`snapshot`, `restore`, …).
    pub command: String,
    /// When it took the lock (unix seconds).
    pub since_unix: i64,
}

impl LockRecord {
    /// The record of this process, taking the lock now.
    fn current(command: &str) -> Self {
        let since_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Self {
            pid: std::process::id(),
            host: hostname(),
            boot_id: boot_id(),
            pid_ns: pid_namespace(),
            start_ticks: proc_stat("self").map_or(0, |s| s.start_ticks),
            command: one_line(command),
            since_unix,
        }
    }

    /// When the lock was taken, in snapshot-id form (`2026-03-08T120000Z`).
    pub fn since(&self) -> String {
        SnapshotId(self.since_unix).to_string()
    }

    fn encode(&self) -> String {
        format!(
            "{RECORD_HEADER}\npid: {}\nhost: {}\nboot_id: {}\npid_ns: {}\nstart_ticks: {}\ncommand: {}\nsince: {}\nsince_unix: {}\ncairn_version: {}\n",
            self.pid,
            self.host,
            self.boot_id,
            self.pid_ns,
            self.start_ticks,
            self.command,
            self.since(),
            self.since_unix,
            env!("CARGO_PKG_VERSION"),
        )
    }

    /// Parses a record; `None` if it is not one.
    pub fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        if lines.next()? != RECORD_HEADER {
            return None;
        }
        let (mut pid, mut host, mut boot, mut ticks, mut command, mut since) =
            (None, None, String::new(), 0, String::new(), None);
        let mut pid_ns = String::new();
        for line in lines {
            let Some((k, v)) = line.split_once(": ") else {
                continue;
            };
            match k {
                "pid" => pid = v.parse().ok(),
                "host" => host = Some(v.to_string()),
                "boot_id" => boot = v.to_string(),
                "pid_ns" => pid_ns = v.to_string(),
                "start_ticks" => ticks = v.parse().unwrap_or(0),
                "command" => command = v.to_string(),
                "since_unix" => since = v.parse().ok(),
                _ => {}
            }
        }
        Some(Self {
            pid: pid?,
            host: host?,
            boot_id: boot,
            pid_ns,
            start_ticks: ticks,
            command,
            since_unix: since?,
        })
    }
}

impl fmt::Display for LockRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pid {} on host {} ({}, since {})",
            self.pid,
            self.host,
            self.command,
            self.since()
        )
    }
}

/// Who holds a lock, as far as can be told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockHolder {
    /// The holder's record.
    Known(LockRecord),
    /// No usable record (the holder is just starting, or is not cairn).
    Unknown {
        /// What is known.
        detail: String,
    },
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockHolder::Known(r) => write!(f, "cairn {r}"),
            LockHolder::Unknown { detail } => write!(f, "another process ({detail})"),
        }
    }
}

/// The held lock of an opened store; released (and its record cleared)
/// when dropped.
#[derive(Debug)]
pub struct StoreLock {
    file: File,
    record: LockRecord,
    warnings: Vec<String>,
    temps_removed: usize,
}

impl StoreLock {
    /// Takes the lock of the store at `root`, waiting as `opts` says.
    pub fn acquire(root: &Path, opts: &LockOptions) -> Result<Self> {
        let path = root.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            // Never truncate on open: the holder's record must survive
            // until the lock is ours.
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .at(&path)?;
        // No deadline if the wait is too long to add. At least a short
        // grace: a holder that has just taken the lock writes its record
        // within milliseconds, and a process forked by this one (between
        // fork and exec) holds a copy of a lock just released here.
        let deadline = Instant::now().checked_add(opts.wait.max(RECORDLESS_GRACE));
        let started = Instant::now();
        let mut pause = Duration::from_millis(10);
        loop {
            if try_flock(&file).at(&path)? {
                break;
            }
            let now = Instant::now();
            let left = deadline.map_or(Duration::MAX, |d| d.saturating_duration_since(now));
            // Within the grace only a holder without a record is waited
            // for; a named holder is reported at once (unless asked to wait).
            let in_grace_only = now.duration_since(started) >= opts.wait
                && !matches!(holder_of(&file), LockHolder::Unknown { .. });
            if left.is_zero() || in_grace_only {
                return Err(StoreError::Locked {
                    path: root.to_owned(),
                    holder: Box::new(holder_of(&file)),
                });
            }
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(Duration::from_millis(250));
        }
        // Ours. What did the previous holder leave?
        let previous = read_record(&file).at(&path)?;
        let mut warnings = Vec::new();
        if let Some(w) = judge_leftover(&previous) {
            warnings.push(w);
        }
        let command = opts.command.clone().unwrap_or_else(program_name);
        let record = LockRecord::current(&command);
        file.set_len(0)
            .and_then(|_| file.write_all_at(record.encode().as_bytes(), 0))
            .and_then(|_| file.sync_all())
            .at(&path)?;
        Ok(Self {
            file,
            record,
            warnings,
            temps_removed: 0,
        })
    }

    /// Removes what runs that died left in `tmp` (nobody else writes there
    /// while the lock is held). Best effort.
    pub(crate) fn clear_temps(&mut self, tmp: &Path) {
        let Ok(entries) = fs::read_dir(tmp) else {
            return;
        };
        for e in entries.flatten() {
            let is_file = e.file_type().map(|t| !t.is_dir()).unwrap_or(false);
            if is_file && fs::remove_file(e.path()).is_ok() {
                self.temps_removed += 1;
            }
        }
    }

    /// This process's lock record.
    pub fn record(&self) -> &LockRecord {
        &self.record
    }

    /// Warnings about a lock record left by an earlier holder (a stale lock
    /// cleared, or another host's record): one line each, to be shown.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// How many leftover temp files opening removed from `STORE/tmp`.
    pub fn temps_removed(&self) -> usize {
        self.temps_removed
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        // A clean release leaves an empty file (only the process that wrote
        // the record clears it: a forked child shares the lock but not the
        // ownership). Closing the file releases the flock.
        if std::process::id() == self.record.pid {
            let _ = self.file.set_len(0);
        }
    }
}

/// Name of a remote store's lock object.
pub const REMOTE_LOCK: &str = "lock";

/// The lock of a remote store: an object created only if absent
/// (a conditional PUT), holding the same record as a local lock file, and
/// deleted on release. Whoever writes to a remote store holds it
/// (replicate, forget, prune), so they run one at a time. A record left by
/// a process that is gone from this host is cleared; one from another host
/// is reported, and `cairn unlock` removes it once that process is known
/// to be gone.
#[derive(Debug)]
pub struct RemoteLock {
    backend: std::sync::Arc<dyn cairn_remote::Backend>,
    record: LockRecord,
    warnings: Vec<String>,
}

impl RemoteLock {
    /// Takes the lock of the store `backend` holds, waiting as `opts` says.
    pub fn acquire(
        backend: std::sync::Arc<dyn cairn_remote::Backend>,
        opts: &LockOptions,
    ) -> Result<Self> {
        let command = opts.command.clone().unwrap_or_else(program_name);
        let record = LockRecord::current(&command);
        let deadline = Instant::now().checked_add(opts.wait);
        let mut warnings = Vec::new();
        let ours = record.encode().into_bytes();
        loop {
            let created = backend.put_new(REMOTE_LOCK, ours.clone())?;
            let found = match backend.get(REMOTE_LOCK) {
                Ok(b) => Some(b),
                Err(cairn_remote::RemoteError::NotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            };
            // Ours (created now, or by an earlier attempt whose answer was
            // lost): read back, so a lock broken meanwhile is not taken
            // for held.
            if found.as_deref() == Some(&ours[..]) {
                return Ok(Self {
                    backend,
                    record,
                    warnings,
                });
            }
            let holder = match &found {
                // Released between the two requests: try again.
                None if !created => None,
                None => Some(LockHolder::Unknown {
                    detail: "the lock object vanished right after it was written".into(),
                }),
                Some(bytes) => {
                    let text = String::from_utf8_lossy(bytes);
                    match LockRecord::parse(&text) {
                        Some(r) => match remote_liveness(&r) {
                            Liveness::Gone(why) => {
                                // Delete only if it still holds that record.
                                if backend.get(REMOTE_LOCK).ok().as_deref() == Some(&bytes[..]) {
                                    backend.delete(REMOTE_LOCK)?;
                                    warnings.push(format!("cleared stale lock of {r}: {why}"));
                                }
                                None
                            }
                            _ => Some(LockHolder::Known(r)),
                        },
                        None => Some(LockHolder::Unknown {
                            detail: format!(
                                "its lock object {} is not cairn's",
                                backend.object_location(REMOTE_LOCK)
                            ),
                        }),
                    }
                }
            };
            let left = deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(Instant::now())
            });
            if let Some(holder) = holder {
                if left.is_zero() {
                    return Err(StoreError::RemoteLocked {
                        location: backend.location(),
                        holder: Box::new(holder),
                    });
                }
                std::thread::sleep(left.min(Duration::from_secs(1)));
            } else {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Whether the lock object still holds this process's record (a
    /// prune checks before it deletes anything).
    pub fn still_held(&self) -> Result<bool> {
        match self.backend.get(REMOTE_LOCK) {
            Ok(b) => {
                Ok(LockRecord::parse(&String::from_utf8_lossy(&b)).as_ref() == Some(&self.record))
            }
            Err(cairn_remote::RemoteError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the lock of the store `backend` holds, whoever holds it;
    /// returns the record it held, if any.
    pub fn force_release(backend: &dyn cairn_remote::Backend) -> Result<Option<String>> {
        match backend.get(REMOTE_LOCK) {
            Ok(b) => {
                backend.delete(REMOTE_LOCK)?;
                let text = String::from_utf8_lossy(&b).into_owned();
                Ok(Some(
                    LockRecord::parse(&text).map_or(text, |r| format!("cairn {r}")),
                ))
            }
            Err(cairn_remote::RemoteError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Warnings about a stale lock cleared on the way in.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

impl Drop for RemoteLock {
    fn drop(&mut self) {
        // Only our own record is removed (a lock broken by `cairn unlock`
        // and taken by another process stays, unless it is taken between
        // this check and the delete: object stores have no conditional
        // delete every server supports).
        if self.still_held().unwrap_or(false) {
            let _ = self.backend.delete(REMOTE_LOCK);
        }
    }
}

/// [`liveness`] for a remote lock, which nothing but its record protects:
/// its holder is judged gone only from the same host, kernel and pid
/// namespace (two containers on one kernel share the boot id, not pids).
fn remote_liveness(r: &LockRecord) -> Liveness {
    let here = pid_namespace();
    if r.host != hostname() || r.pid_ns.is_empty() || here.is_empty() || r.pid_ns != here {
        return Liveness::Elsewhere;
    }
    liveness(r)
}

/// The pid namespace of this process (`pid:[4026531836]`), or empty.
fn pid_namespace() -> String {
    fs::read_link("/proc/self/ns/pid")
        .map(|p| one_line(&p.to_string_lossy()))
        .unwrap_or_default()
}

/// `Ok(true)` if the exclusive lock was taken, `Ok(false)` if another
/// open file holds it (std's `try_lock` is `flock(LOCK_EX | LOCK_NB)` on
/// Linux).
fn try_flock(file: &File) -> io::Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(fs::TryLockError::WouldBlock) => Ok(false),
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

fn read_all(file: &File) -> io::Result<String> {
    let len = file.metadata()?.len().min(64 * 1024) as usize;
    let mut buf = vec![0u8; len];
    let n = file.read_at(&mut buf, 0)?;
    buf.truncate(n);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// What the file holds: nothing, a record, or something else.
enum Previous {
    Empty,
    Record(LockRecord),
    Garbage,
}

fn read_record(file: &File) -> io::Result<Previous> {
    let text = read_all(file)?;
    if text.trim().is_empty() {
        return Ok(Previous::Empty);
    }
    Ok(LockRecord::parse(&text).map_or(Previous::Garbage, Previous::Record))
}

/// Who holds the lock another open file has. The holder writes its record
/// just after taking the lock, so an empty file is read again briefly.
fn holder_of(file: &File) -> LockHolder {
    let mut last = Previous::Empty;
    for _ in 0..10 {
        match read_record(file) {
            Ok(Previous::Record(r)) => {
                if let Liveness::Gone(why) = liveness(&r) {
                    // Someone holds the lock, but not the process the
                    // record names (another program flock'ing the file?).
                    return LockHolder::Unknown {
                        detail: format!(
                            "not cairn pid {} on host {} named in the lock file: {why}",
                            r.pid, r.host
                        ),
                    };
                }
                return LockHolder::Known(r);
            }
            Ok(p) => last = p,
            Err(e) => {
                return LockHolder::Unknown {
                    detail: format!("its lock record cannot be read: {e}"),
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    LockHolder::Unknown {
        detail: match last {
            Previous::Garbage => "its lock record is not cairn's".into(),
            _ => "it left no lock record".into(),
        },
    }
}

/// Whether the process a record names is still the one that wrote it.
enum Liveness {
    /// Same kernel, same pid and start time: it is running.
    Running,
    /// Gone, with the reason.
    Gone(String),
    /// Another host: cannot be checked from here.
    Elsewhere,
}

fn liveness(r: &LockRecord) -> Liveness {
    let my_boot = boot_id();
    let same_kernel = !my_boot.is_empty() && my_boot == r.boot_id;
    let my_host = hostname();
    if !same_kernel {
        if r.host == my_host {
            if !my_boot.is_empty() && !r.boot_id.is_empty() {
                return Liveness::Gone("process is gone (the host has restarted since)".into());
            }
        } else {
            return Liveness::Elsewhere;
        }
    }
    match proc_stat(&r.pid.to_string()) {
        // Exited and not yet reaped (a zombie) is gone too.
        None => Liveness::Gone("process is gone".into()),
        Some(s) if s.state == 'Z' || s.state == 'X' => Liveness::Gone("process is gone".into()),
        Some(s) if r.start_ticks != 0 && s.start_ticks != r.start_ticks => Liveness::Gone(format!(
            "process is gone (pid {} now belongs to another process)",
            r.pid
        )),
        Some(_) => Liveness::Running,
    }
}

/// [`liveness`], allowing a holder that is still exiting a moment to go: a
/// dying process drops its flock when its files are closed, a little
/// before it leaves the process table.
fn settled_liveness(r: &LockRecord) -> Liveness {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match liveness(r) {
            Liveness::Running if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            l => return l,
        }
    }
}

/// The warning for a record found in a lock file just taken, if any.
fn judge_leftover(previous: &Previous) -> Option<String> {
    match previous {
        Previous::Empty => None,
        Previous::Garbage => {
            Some("replaced an unreadable lock record in the store's lock file".into())
        }
        Previous::Record(r) => Some(match settled_liveness(r) {
            Liveness::Gone(why) => format!("cleared stale lock of {r}: {why}"),
            // flock is authoritative on one kernel: the lock was free.
            Liveness::Running => format!(
                "cleared stale lock of {r}: the process is still running but no longer holds the lock"
            ),
            Liveness::Elsewhere => format!(
                "the store's lock file names cairn {r}, which cannot be checked from host {}; \
                 the lock was free, so proceeding (if the store is on shared storage, make sure \
                 {} is not using it)",
                hostname(),
                r.host
            ),
        }),
    }
}

struct ProcStat {
    state: char,
    start_ticks: u64,
}

/// State and start time (field 22) of `/proc/<pid>/stat`.
fn proc_stat(pid: &str) -> Option<ProcStat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_stat(text: &str) -> Option<ProcStat> {
    // The command name (field 2) is in parentheses and may hold anything.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); field 22 is fields[19].
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| one_line(s.trim()))
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn program_name() -> String {
    std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "unknown".into())
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips() {
        let r = LockRecord::current("snapshot");
        assert_eq!(LockRecord::parse(&r.encode()), Some(r.clone()));
        assert!(r.start_ticks > 0, "starttime from /proc/self/stat");
        assert!(!r.boot_id.is_empty());
        assert!(matches!(liveness(&r), Liveness::Running));
    }

    #[test]
    fn second_open_is_refused_then_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let opts = LockOptions {
            command: Some("snapshot".into()),
            ..LockOptions::default()
        };
        let held = StoreLock::acquire(dir.path(), &opts).unwrap();
        assert!(held.warnings().is_empty());
        let err = StoreLock::acquire(dir.path(), &LockOptions::default()).unwrap_err();
        let msg = err.to_string();
        let want = format!(
            "is in use by cairn pid {} on host {} (snapshot, since ",
            std::process::id(),
            hostname()
        );
        assert!(msg.contains(&want), "{msg}");
        assert!(!msg.contains('\n'));
        drop(held);
        assert_eq!(fs::read(dir.path().join(LOCK_FILE)).unwrap().len(), 0);
        let again = StoreLock::acquire(dir.path(), &opts).unwrap();
        assert!(again.warnings().is_empty(), "{:?}", again.warnings());
    }

    #[test]
    fn waits_for_release() {
        let dir = tempfile::tempdir().unwrap();
        let held = StoreLock::acquire(dir.path(), &LockOptions::default()).unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        let start = Instant::now();
        let got = StoreLock::acquire(
            dir.path(),
            &LockOptions {
                wait: Duration::from_secs(10),
                command: None,
            },
        );
        t.join().unwrap();
        assert!(got.is_ok());
        assert!(start.elapsed() >= Duration::from_millis(250));
        // And a wait that ends first fails.
        let _held = got.unwrap();
        let start = Instant::now();
        let err = StoreLock::acquire(
            dir.path(),
            &LockOptions {
                wait: Duration::from_millis(300),
                command: None,
            },
        )
        .unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }));
        assert!(start.elapsed() >= Duration::from_millis(300));
    }

    #[test]
    fn a_remote_lock_is_stale_only_from_the_same_pid_namespace() {
        let me = LockRecord::current("prune");
        assert!(me.pid_ns.starts_with("pid:["), "{}", me.pid_ns);
        assert_eq!(LockRecord::parse(&me.encode()), Some(me.clone()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let gone = LockRecord {
            pid: dead,
            ..me.clone()
        };
        assert!(matches!(remote_liveness(&gone), Liveness::Gone(_)));
        // Another container on this kernel: same boot id, its own pids.
        let elsewhere = LockRecord {
            pid_ns: "pid:[1]".into(),
            ..gone.clone()
        };
        assert!(matches!(remote_liveness(&elsewhere), Liveness::Elsewhere));
        // A record from before pid namespaces were recorded.
        let old = LockRecord {
            pid_ns: String::new(),
            ..gone
        };
        assert!(matches!(remote_liveness(&old), Liveness::Elsewhere));
        assert!(matches!(remote_liveness(&me), Liveness::Running));
    }

    fn leftover(dir: &Path, r: &LockRecord) -> Vec<String> {
        fs::write(dir.join(LOCK_FILE), r.encode()).unwrap();
        StoreLock::acquire(dir, &LockOptions::default())
            .unwrap()
            .warnings()
            .to_vec()
    }

    #[test]
    fn stale_records_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let me = LockRecord::current("snapshot");
        // A pid that has exited.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let w = leftover(
            dir.path(),
            &LockRecord {
                pid: dead,
                ..me.clone()
            },
        );
        assert_eq!(
            w,
            vec![format!(
                "cleared stale lock of pid {dead} on host {} (snapshot, since {}): process is gone",
                me.host,
                me.since()
            )]
        );
        // A reused pid: alive, but started at another time.
        let w = leftover(
            dir.path(),
            &LockRecord {
                start_ticks: me.start_ticks + 1,
                ..me.clone()
            },
        );
        assert!(w[0].contains("now belongs to another process"), "{w:?}");
        // Another boot of this host.
        let w = leftover(
            dir.path(),
            &LockRecord {
                boot_id: "00000000-0000-0000-0000-000000000000".into(),
                ..me.clone()
            },
        );
        assert!(w[0].contains("restarted"), "{w:?}");
        // Another host: cannot be checked, said so.
        let w = leftover(
            dir.path(),
            &LockRecord {
                host: "elsewhere.example".into(),
                boot_id: "00000000-0000-0000-0000-000000000000".into(),
                ..me.clone()
            },
        );
        assert!(w[0].contains("cannot be checked"), "{w:?}");
        assert!(w[0].contains("elsewhere.example"), "{w:?}");
        // Garbage.
        fs::write(dir.path().join(LOCK_FILE), "hello").unwrap();
        let l = StoreLock::acquire(dir.path(), &LockOptions::default()).unwrap();
        assert_eq!(l.warnings().len(), 1);
    }

    #[test]
    fn proc_stat_parses_odd_names() {
        let odd = "77 (a) b (c) 9) S 1 77 77 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1 2";
        let s = parse_stat(odd).unwrap();
        assert_eq!((s.state, s.start_ticks), ('S', 123456));
        let s = proc_stat("self").unwrap();
        // The main thread (which /proc/self/stat describes) may be asleep.
        assert!("RS".contains(s.state), "{}", s.state);
        assert!(s.start_ticks > 0);
    }
}
