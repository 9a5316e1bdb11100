//! The store lock (`STORE/lock`, see `crates/cairn-store/src/lock.rs`):
//! a second process is refused while another holds the lock, naming it;
//! `--lock-wait` waits; a record left by a process that is gone is
//! reported as cleared; a record from another host is warned about.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .to_string()
}

/// Field 22 (starttime) of /proc/PID/stat.
fn start_ticks(pid: u32) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &s[s.rfind(')').unwrap() + 1..];
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// A lock record as cairn writes it.
fn record(pid: u32, host: &str, boot: &str, ticks: u64, command: &str, since: i64) -> String {
    format!(
        "cairn lock record v1\npid: {pid}\nhost: {host}\nboot_id: {boot}\nstart_ticks: {ticks}\ncommand: {command}\nsince_unix: {since}\n"
    )
}

// 2026-11-25T201500Z
const SINCE: i64 = 1_795_637_700;
const SINCE_TEXT: &str = "2026-11-25T201500Z";

/// Another process (python3, which the tests need anyway) that takes the
/// flock on `STORE/lock`, writes a record naming itself, says "locked",
/// and holds the lock until its stdin is closed. It exits without
/// clearing the record, as a killed cairn would.
struct Holder {
    child: Child,
}

impl Holder {
    fn start(store: &Path, command: &str) -> Self {
        let script = format!(
            r#"
import fcntl, os, sys
f = open({lock:?}, "r+")
fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
stat = open("/proc/self/stat").read()
ticks = stat[stat.rindex(")") + 1:].split()[19]
host = open("/proc/sys/kernel/hostname").read().strip()
boot = open("/proc/sys/kernel/random/boot_id").read().strip()
f.truncate(0)
f.write("cairn lock record v1\npid: %d\nhost: %s\nboot_id: %s\nstart_ticks: %s\ncommand: {command}\nsince_unix: {SINCE}\n" % (os.getpid(), host, boot, ticks))
f.flush()
os.fsync(f.fileno())
print("locked", flush=True)
sys.stdin.read()
"#,
            lock = store.join("lock").to_str().unwrap(),
        );
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked", "holder did not take the lock");
        Self { child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lets it go and waits until it has exited.
    fn release(mut self) {
        drop(self.child.stdin.take());
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn store_with_a_snapshot() -> (Scratch, String) {
    let s = Scratch::new();
    s.ok(&["init"]);
    let data = s.path("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("a"), b"hello").unwrap();
    let snap = s.snapshot(&data)["id"].as_str().unwrap().to_string();
    (s, snap)
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn second_process_is_refused_naming_the_holder_then_served() {
    let (s, snap) = store_with_a_snapshot();
    let store = s.store();
    let holder = Holder::start(&store, "snapshot");
    let pid = holder.pid();
    let want = format!(
        "cairn: error: store {} is in use by cairn pid {pid} on host {} (snapshot, since {SINCE_TEXT})\n",
        store.display(),
        hostname()
    );

    // Refused at once, one line naming the holder, for every command.
    for args in [
        &["list"][..],
        &["stats"],
        &["ls", "latest"],
        &["index", "rebuild"],
    ] {
        let start = Instant::now();
        let err = s.fails(args);
        assert_eq!(err, want, "cairn {args:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }
    let target = s.path("target");
    let err = s.fails(&["restore", "--target", target.to_str().unwrap()]);
    assert_eq!(err, want);
    let err = s.fails(&["snapshot", "--data-path", s.path("data").to_str().unwrap()]);
    assert_eq!(err, want);
    // The refused commands changed nothing: the holder's record is intact.
    let rec = fs::read_to_string(store.join("lock")).unwrap();
    assert!(rec.contains(&format!("pid: {pid}\n")), "{rec}");

    // A wait shorter than the hold fails after waiting.
    let start = Instant::now();
    let err = s.fails(&["--lock-wait", "0.5", "list"]);
    assert_eq!(err, want);
    assert!(start.elapsed() >= Duration::from_millis(500));

    // A long wait is served once the holder lets go. The holder ends
    // without clearing its record, so the waiter reports the stale lock.
    let waiter = Command::new(cairn_bin())
        .args([
            "--store",
            store.to_str().unwrap(),
            "--lock-wait",
            "60",
            "list",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    holder.release();
    let out = waiter.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&snap));
    assert_eq!(
        stderr_of(&out),
        format!(
            "cairn: warning: cleared stale lock of pid {pid} on host {} (snapshot, since {SINCE_TEXT}): process is gone\n",
            hostname()
        )
    );

    // cairn released cleanly: no record, no warning next time.
    assert_eq!(fs::read(store.join("lock")).unwrap().len(), 0);
    let out = s.cairn(&["list"]);
    assert!(out.status.success());
    assert_eq!(stderr_of(&out), "");
}

#[test]
fn a_running_cairn_holds_the_lock_for_its_whole_run() {
    // A real cairn snapshot, paused with SIGSTOP once it has the lock.
    let s = Scratch::new();
    s.ok(&["init"]);
    let data = s.path("data");
    fs::create_dir(&data).unwrap();
    // 48 MiB of incompressible bytes: long enough to catch it running.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let bytes: Vec<u8> = (0..48 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    fs::write(data.join("big"), bytes).unwrap();
    let lock = s.store().join("lock");
    for attempt in 0.. {
        assert!(attempt < 20, "never caught the snapshot running");
        let mut child = Command::new(cairn_bin())
            .args(["--store", s.store().to_str().unwrap(), "-q"])
            .args(["snapshot", "--full-read", "--data-path"])
            .arg(&data)
            .spawn()
            .unwrap();
        let pid = child.id();
        let mine = format!("pid: {pid}\n");
        let mut caught = false;
        while child.try_wait().unwrap().is_none() {
            if fs::read_to_string(&lock)
                .unwrap_or_default()
                .contains(&mine)
            {
                let st = Command::new("kill")
                    .args(["-STOP", &pid.to_string()])
                    .status()
                    .unwrap();
                assert!(st.success());
                caught = fs::read_to_string(&lock).unwrap().contains(&mine)
                    && child.try_wait().unwrap().is_none();
                break;
            }
        }
        if caught {
            let err = s.fails(&["list"]);
            let want = format!(
                "cairn: error: store {} is in use by cairn pid {pid} on host {} (snapshot, since ",
                s.store().display(),
                hostname()
            );
            assert!(err.starts_with(&want), "{err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
        let _ = Command::new("kill")
            .args(["-CONT", &pid.to_string()])
            .status();
        assert!(child.wait().unwrap().success());
        if caught {
            break;
        }
    }
    // It finished and released the lock.
    assert_eq!(fs::read(&lock).unwrap().len(), 0);
    let out = s.ok(&["list"]);
    assert_eq!(out.lines().count(), 2, "{out}");
}

#[test]
fn leftover_records_are_reported_never_silently_cleared() {
    let (s, _) = store_with_a_snapshot();
    let lock = s.store().join("lock");
    let host = hostname();
    let boot = boot_id();

    // A process that has exited.
    let mut c = Command::new("true").spawn().unwrap();
    let dead = c.id();
    c.wait().unwrap();
    fs::write(&lock, record(dead, &host, &boot, 12345, "snapshot", SINCE)).unwrap();
    let out = s.cairn(&["list"]);
    assert!(out.status.success());
    assert_eq!(
        stderr_of(&out),
        format!("cairn: warning: cleared stale lock of pid {dead} on host {host} (snapshot, since {SINCE_TEXT}): process is gone\n")
    );

    // A pid that is alive but is another process now (reused pid): this
    // test's own pid with a start time that is not ours.
    let me = std::process::id();
    let wrong = start_ticks(me) + 1;
    fs::write(&lock, record(me, &host, &boot, wrong, "restore", SINCE)).unwrap();
    let out = s.cairn(&["list"]);
    assert!(out.status.success());
    assert_eq!(
        stderr_of(&out),
        format!("cairn: warning: cleared stale lock of pid {me} on host {host} (restore, since {SINCE_TEXT}): process is gone (pid {me} now belongs to another process)\n")
    );

    // This host before a reboot.
    let old_boot = "00000000-0000-0000-0000-000000000000";
    fs::write(&lock, record(me, &host, old_boot, wrong, "snapshot", SINCE)).unwrap();
    let out = s.cairn(&["list"]);
    assert!(out.status.success());
    assert!(
        stderr_of(&out).contains("process is gone (the host has restarted since)"),
        "{}",
        stderr_of(&out)
    );

    // Another host: cannot be checked; proceeds, naming it.
    fs::write(
        &lock,
        record(4242, "nas-peer", old_boot, 1, "snapshot", SINCE),
    )
    .unwrap();
    let out = s.cairn(&["list"]);
    assert!(out.status.success());
    let err = stderr_of(&out);
    assert!(err.starts_with("cairn: warning: "), "{err}");
    assert!(
        err.contains(&format!(
            "pid 4242 on host nas-peer (snapshot, since {SINCE_TEXT}), which cannot be checked from host {host}"
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);

    // Garbage in the lock file is reported too.
    fs::write(&lock, "not a record").unwrap();
    let out = s.cairn(&["list"]);
    assert!(out.status.success());
    assert!(stderr_of(&out).contains("unreadable lock record"));

    // Each cairn cleared what it found and left the file empty.
    assert_eq!(fs::read(&lock).unwrap().len(), 0);
    let out = s.cairn(&["list"]);
    assert_eq!(stderr_of(&out), "");
}

#[test]
fn leftover_temp_files_are_removed_by_the_next_holder() {
    let (s, snap) = store_with_a_snapshot();
    let tmp = s.store().join("tmp");
    let mut f = fs::File::create(tmp.join("pack.1234.00112233.tmp")).unwrap();
    f.write_all(&[7u8; 4096]).unwrap();
    drop(f);
    fs::write(tmp.join("write.1234.44556677.tmp"), b"half a manifest").unwrap();
    let out = s.ok(&["list"]);
    assert!(out.contains(&snap));
    assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    // And the store is still whole.
    let target = s.path("restored");
    s.ok(&["restore", "--target", target.to_str().unwrap()]);
    assert_same_tree(&s.path("data"), &target);
}

#[test]
fn a_held_lock_does_not_stop_init_elsewhere_and_init_takes_it() {
    // init on a fresh path takes the lock too, and leaves it released.
    let s = Scratch::new();
    s.ok(&["init"]);
    assert_eq!(fs::read(s.store().join("lock")).unwrap().len(), 0);
    // A second init of the same store is refused as before.
    let err = s.fails(&["init"]);
    assert!(err.contains("already exists"), "{err}");
}
