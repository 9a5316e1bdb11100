//! Restoring in place into a HitKeep layout (`restore --data-path`, and
//! the runbook's `recover restore-backup` command line): refusal while a
//! process holds a database, rollback at injected failures, the runbook
//! command into an empty and into an aged data path, the confirmation
//! prompt, and the tenant / control-plane scopes.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::*;

/// The restore command exactly as the runbook prints it.
const RUNBOOK: &str = "./hitkeep recover restore-backup \\
-from /var/lib/hitkeep/backups \\
-snapshot 2026-03-08T120000Z \\
-db /var/lib/hitkeep/data/hitkeep.db \\
-data-path /var/lib/hitkeep/data \\
-yes";

/// The runbook's command line with only the paths (and the snapshot id)
/// changed; `yes: false` drops the final `-yes`.
fn runbook_args(store: &Path, snapshot: &str, data: &Path, db: &Path, yes: bool) -> Vec<String> {
    let text = RUNBOOK
        .replace("/var/lib/hitkeep/backups", store.to_str().unwrap())
        .replace("2026-03-08T120000Z", snapshot)
        .replace("/var/lib/hitkeep/data/hitkeep.db", db.to_str().unwrap())
        .replace("/var/lib/hitkeep/data", data.to_str().unwrap());
    let mut args: Vec<String> = text
        .split_whitespace()
        .filter(|w| *w != "\\")
        .skip(1) // ./hitkeep: the binary is cairn
        .map(String::from)
        .collect();
    assert_eq!(args.last().map(String::as_str), Some("-yes"));
    if !yes {
        args.pop();
    }
    args
}

/// Runs `cairn` with exactly `args` (no --store: the runbook passes -from).
fn run(args: &[String], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(cairn_bin());
    cmd.args(args)
        .env_remove("CAIRN_STORE")
        .env_remove("CAIRN_FAILPOINT")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run cairn");
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap()
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn failed(out: Output, what: &str) -> String {
    assert!(!out.status.success(), "{what} should fail");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!err.contains("panicked"), "{what} panicked: {err}");
    err
}

/// A fresh tiny data path, a store, and a snapshot of it; returns the id.
fn setup(s: &Scratch) -> (PathBuf, String) {
    let data = s.path("data");
    tiny_data_path(&data);
    s.ok(&["init"]);
    let m = s.snapshot(&data);
    (data, m["id"].as_str().unwrap().to_string())
}

fn tenants(data: &Path) -> Vec<String> {
    let mut t: Vec<String> = fs::read_dir(data.join("tenants"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    t.sort();
    t
}

/// Writes to each database (a committed, checkpointed row in a new table),
/// so it differs from the snapshot's. Closes cleanly: no WAL is left.
fn touch_dbs(dbs: &[PathBuf]) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import duckdb, sys\n\
             for p in sys.argv[1:]:\n\
             \x20   c = duckdb.connect(p)\n\
             \x20   c.execute('CREATE TABLE IF NOT EXISTS after_snapshot(x INTEGER)')\n\
             \x20   c.execute('INSERT INTO after_snapshot VALUES (1)')\n\
             \x20   c.execute('CHECKPOINT')\n\
             \x20   c.close()\n",
        )
        .args(dbs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether the database has the table `touch_dbs` adds (opened read-only,
/// so with a WAL beside it DuckDB replays that too).
fn has_after_snapshot(db: &Path) -> bool {
    duckdb_counts(&[db.to_owned()])[0].contains_key("main.after_snapshot")
}

fn assert_same_digest(before: &Digest, after: &Digest, what: &str) {
    if before == after {
        return;
    }
    let keys: BTreeSet<_> = before.keys().chain(after.keys()).collect();
    let diff: Vec<String> = keys
        .into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| {
            format!(
                "{} ({})",
                k.display(),
                match (before.get(k), after.get(k)) {
                    (None, _) => "appeared",
                    (_, None) => "vanished",
                    _ => "changed",
                }
            )
        })
        .collect();
    panic!("{what}: the data path changed: {diff:?}");
}

type Digest = std::collections::BTreeMap<PathBuf, (String, u32, Vec<u8>, i64)>;

/// Paths whose entry differs between two digests.
fn changed(before: &Digest, after: &Digest) -> BTreeSet<PathBuf> {
    before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect()
}

/// A process holding `file` open (fd 3 of a sleeping shell), killed on drop.
struct Holder(std::process::Child);

impl Holder {
    fn new(file: &Path) -> Self {
        let child = Command::new("sh")
            .arg("-c")
            .arg("exec 3<\"$1\"; exec sleep 120")
            .arg("holder")
            .arg(file)
            .spawn()
            .unwrap();
        // Owned from here on: dropping it kills and reaps the process.
        let holder = Self(child);
        let want = fs::canonicalize(file).unwrap();
        let fd = PathBuf::from(format!("/proc/{}/fd/3", holder.pid()));
        for _ in 0..500 {
            if fs::read_link(&fd).is_ok_and(|t| t == want) {
                return holder;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("holder never opened {}", file.display());
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn store_arg(s: &Scratch) -> String {
    s.store().to_str().unwrap().to_string()
}

/// `cairn --store S restore --snapshot ID --data-path D extra...`.
fn in_place_args(s: &Scratch, id: &str, data: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "--store",
        &store_arg(s),
        "restore",
        "--snapshot",
        id,
        "--data-path",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    a.push(data.to_str().unwrap().into());
    a.extend(extra.iter().map(|x| x.to_string()));
    a
}

#[test]
fn restore_refuses_while_a_process_holds_the_db_and_force_proceeds() {
    let s = Scratch::new();
    let (data, id) = setup(&s);
    let orig = s.path("orig");
    copy_tree(&data, &orig);
    let db = data.join("hitkeep.db");
    touch_dbs(std::slice::from_ref(&db));
    let modified = fs::read(&db).unwrap();
    let before = tree_digest(&data);

    let holder = Holder::new(&db);
    let pid = holder.pid().to_string();
    for (what, args) in [
        (
            "restore --data-path",
            in_place_args(&s, &id, &data, &["--yes"]),
        ),
        ("runbook", runbook_args(&s.store(), &id, &data, &db, true)),
    ] {
        let err = failed(run(&args, &[], b""), what);
        let last = err.trim().lines().last().unwrap();
        assert!(
            last.contains(&pid) && last.contains("open in process") && last.contains("hitkeep.db"),
            "{what}: refusal does not name the holder {pid}: {err}"
        );
        assert_same_digest(&before, &tree_digest(&data), what);
    }

    let out = run(
        &in_place_args(&s, &id, &data, &["--yes", "--force"]),
        &[],
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    ok(out, "restore --force");
    assert!(err.contains(&pid) && err.contains("--force"), "{err}");
    assert_eq!(
        fs::read(&db).unwrap(),
        fs::read(orig.join("hitkeep.db")).unwrap()
    );
    let asides: Vec<PathBuf> = files_under(&data)
        .into_iter()
        .filter(|p| p.to_str().unwrap().starts_with("hitkeep.db.pre-restore."))
        .collect();
    assert_eq!(asides.len(), 1, "{asides:?}");
    assert_eq!(fs::read(data.join(&asides[0])).unwrap(), modified);
    drop(holder);
}

#[test]
fn injected_failures_leave_the_data_path_exactly_as_before() {
    let s = Scratch::new();
    let (data, id) = setup(&s);
    let orig = s.path("orig");
    copy_tree(&data, &orig);
    // Diverge: an hour of traffic with WALs left behind, a tenant gone
    // (its directories must be created), an asset gone, a mode changed.
    gen(&[
        "age",
        data.to_str().unwrap(),
        "--hours",
        "1",
        "--seed",
        "21",
        "--leave-wal",
    ]);
    assert!(files_under(&data)
        .iter()
        .any(|p| p.extension().is_some_and(|e| e == "wal")));
    let gone = tenants(&orig)[0].clone();
    fs::remove_dir_all(data.join("tenants").join(&gone)).unwrap();
    let asset = files_under(&data.join("assets"))[0].clone();
    fs::remove_file(data.join("assets").join(&asset)).unwrap();
    fs::set_permissions(
        data.join("spam-filter.json"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let before = tree_digest(&data);
    let db = data.join("hitkeep.db");

    for fp in ["recover-after-stage", "recover-mid-swap"] {
        for (what, args) in [
            (
                "restore --data-path",
                in_place_args(&s, &id, &data, &["--yes"]),
            ),
            ("runbook", runbook_args(&s.store(), &id, &data, &db, true)),
        ] {
            let what = format!("{what} with CAIRN_FAILPOINT={fp}");
            let err = failed(run(&args, &[("CAIRN_FAILPOINT", fp)], b""), &what);
            assert!(
                err.contains(&format!("injected failure at {fp}")),
                "{what}: {err}"
            );
            assert_same_digest(&before, &tree_digest(&data), &what);
        }
    }

    // Without a failure the same command does restore.
    ok(
        run(&runbook_args(&s.store(), &id, &data, &db, true), &[], b""),
        "runbook",
    );
    for f in files_under(&orig) {
        assert_eq!(
            fs::read(data.join(&f)).unwrap(),
            fs::read(orig.join(&f)).unwrap(),
            "{} not restored",
            f.display()
        );
    }
}

/// `orig` (the snapshotted data path) against `restored`: every file of
/// `orig` is there with the same bytes; databases also open in DuckDB with
/// the same row count in every table, and have mode 0600; other files keep
/// their mode. No `.wal` anywhere in `restored`.
fn assert_restored(orig: &Path, restored: &Path) {
    let mut dbs = Vec::new();
    for f in files_under(orig) {
        let (a, b) = (orig.join(&f), restored.join(&f));
        assert!(b.is_file(), "{} not restored", f.display());
        assert_eq!(
            fs::read(&a).unwrap(),
            fs::read(&b).unwrap(),
            "{} differs",
            f.display()
        );
        let mode = fs::metadata(&b).unwrap().permissions().mode() & 0o7777;
        if is_duckdb_file(&a) {
            assert_eq!(mode, 0o600, "{} has mode {mode:o}", f.display());
            dbs.push(f);
        } else {
            let want = fs::metadata(&a).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode, want, "{} mode", f.display());
        }
    }
    assert_eq!(dbs.len(), 4, "control plane + 3 tenants: {dbs:?}");
    let wals: Vec<PathBuf> = files_under(restored)
        .into_iter()
        .filter(|p| p.to_str().unwrap().ends_with(".wal"))
        .collect();
    assert!(wals.is_empty(), "WALs after restore: {wals:?}");
    let counts_a = duckdb_counts(&dbs.iter().map(|f| orig.join(f)).collect::<Vec<_>>());
    let counts_b = duckdb_counts(&dbs.iter().map(|f| restored.join(f)).collect::<Vec<_>>());
    for ((f, a), b) in dbs.iter().zip(&counts_a).zip(&counts_b) {
        assert!(a.len() > 3, "{}: {a:?}", f.display());
        assert_eq!(a, b, "{}: row counts differ", f.display());
    }
}

#[test]
fn runbook_command_restores_into_an_empty_data_path() {
    let s = Scratch::new();
    let (data, id) = setup(&s);
    let new = s.path("new-host/data");
    fs::create_dir_all(&new).unwrap();
    let out = ok(
        run(
            &runbook_args(&s.store(), &id, &new, &new.join("hitkeep.db"), true),
            &[],
            b"",
        ),
        "runbook",
    );
    assert!(out.contains(&id), "{out}");
    assert_eq!(
        files_under(&new),
        files_under(&data),
        "restored set of files"
    );
    assert_restored(&data, &new);
}

/// A relative --data-path that does not exist yet is created where the
/// working directory says, its parents too (it once failed with an error
/// naming an empty path).
#[test]
fn a_relative_data_path_not_there_yet_is_created_and_restored() {
    let s = Scratch::new();
    let (data, id) = setup(&s);
    let args = in_place_args(&s, &id, Path::new("new-host/data"), &["--yes"]);
    let out = Command::new(cairn_bin())
        .args(&args)
        .current_dir(s.path(""))
        .env_remove("CAIRN_STORE")
        .env_remove("CAIRN_FAILPOINT")
        .output()
        .unwrap();
    ok(out, "restore to a relative data path");
    assert_restored(&data, &s.path("new-host/data"));
}

/// In place, files with 255-byte names are created, and replaced with
/// the originals set aside under names that fit.
#[test]
fn in_place_restore_takes_names_of_255_bytes() {
    let s = Scratch::new();
    let data = s.path("data");
    tiny_data_path(&data);
    let long = ["a".repeat(255), format!("{}{}", "b".repeat(250), "-one")];
    for (i, n) in long.iter().enumerate() {
        fs::write(data.join("assets").join(n), format!("snapshot {i}")).unwrap();
    }
    s.ok(&["init"]);
    let id = s.snapshot(&data)["id"].as_str().unwrap().to_string();
    let new = s.path("new");
    ok(
        run(&in_place_args(&s, &id, &new, &["--yes"]), &[], b""),
        "in-place restore into an empty data path",
    );
    for (i, n) in long.iter().enumerate() {
        assert_eq!(
            fs::read(new.join("assets").join(n)).unwrap(),
            format!("snapshot {i}").as_bytes()
        );
        fs::write(new.join("assets").join(n), format!("live {i}")).unwrap();
    }
    ok(
        run(&in_place_args(&s, &id, &new, &["--yes"]), &[], b""),
        "in-place restore over changed files",
    );
    let assets: Vec<String> = fs::read_dir(new.join("assets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for (i, n) in long.iter().enumerate() {
        assert_eq!(
            fs::read(new.join("assets").join(n)).unwrap(),
            format!("snapshot {i}").as_bytes()
        );
        let aside: Vec<&String> = assets
            .iter()
            .filter(|a| {
                a.contains(".pre-restore.")
                    && fs::read(new.join("assets").join(a)).unwrap()
                        == format!("live {i}").as_bytes()
            })
            .collect();
        assert_eq!(aside.len(), 1, "{i}: {assets:?}");
        assert!(aside[0].starts_with(&n[..150]), "{}", aside[0]);
    }
}

#[test]
fn runbook_command_restores_over_an_aged_data_path_with_wals() {
    let s = Scratch::new();
    let (data, id) = setup(&s);
    let orig = s.path("orig");
    copy_tree(&data, &orig);
    gen(&[
        "age",
        data.to_str().unwrap(),
        "--hours",
        "1",
        "--seed",
        "31",
        "--leave-wal",
    ]);
    let aged = s.path("aged");
    copy_tree(&data, &aged);
    let wals: Vec<PathBuf> = files_under(&data)
        .into_iter()
        .filter(|p| p.to_str().unwrap().ends_with(".wal"))
        .collect();
    assert!(!wals.is_empty(), "the generator left no WAL");

    ok(
        run(
            &runbook_args(&s.store(), &id, &data, &data.join("hitkeep.db"), true),
            &[],
            b"",
        ),
        "runbook",
    );
    assert_restored(&orig, &data);
    // Every original that was replaced, and every WAL, is kept aside
    // unchanged as <name>.pre-restore.<ts>.
    let asides: Vec<PathBuf> = files_under(&data)
        .into_iter()
        .filter(|p| p.to_str().unwrap().contains(".pre-restore."))
        .collect();
    for w in &wals {
        let kept: Vec<_> = asides
            .iter()
            .filter(|a| {
                a.to_str()
                    .unwrap()
                    .starts_with(&format!("{}.pre-restore.", w.display()))
            })
            .collect();
        assert_eq!(
            kept.len(),
            1,
            "WAL {} not moved aside: {asides:?}",
            w.display()
        );
    }
    for a in &asides {
        let name = a.to_str().unwrap();
        let original = PathBuf::from(&name[..name.find(".pre-restore.").unwrap()]);
        assert_eq!(
            fs::read(data.join(a)).unwrap(),
            fs::read(aged.join(&original)).unwrap(),
            "{} is not the original {}",
            a.display(),
            original.display()
        );
    }
    let replaced_dbs = asides
        .iter()
        .filter(|a| !a.to_str().unwrap().contains(".wal.pre-restore."))
        .count();
    assert!(replaced_dbs >= 1, "{asides:?}");
}

#[test]
fn without_yes_only_y_restores() {
    let s = Scratch::new();
    let (data, id) = setup(&s);
    let orig = s.path("orig");
    copy_tree(&data, &orig);
    let db = data.join("hitkeep.db");
    let t = tenants(&data)[0].clone();
    touch_dbs(&[db.clone(), data.join("tenants").join(&t).join("hitkeep.db")]);
    let asset = files_under(&data.join("assets"))[0].clone();
    fs::remove_file(data.join("assets").join(&asset)).unwrap();
    let before = tree_digest(&data);

    let runbook = runbook_args(&s.store(), &id, &data, &db, false);
    let in_place = in_place_args(&s, &id, &data, &[]);
    for (what, args, answer) in [
        ("runbook, answer n", &runbook, &b"n\n"[..]),
        ("runbook, no answer", &runbook, &b""[..]),
        ("runbook, answer yes please", &runbook, &b"yes please\n"[..]),
        ("restore --data-path, answer N", &in_place, &b"N\n"[..]),
    ] {
        let out = run(args, &[], answer);
        assert_eq!(out.status.code(), Some(1), "{what}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("[y/N]"), "{what}: no question asked: {err}");
        assert!(err.contains("replace"), "{what}: no plan shown: {err}");
        assert!(err.contains("nothing changed"), "{what}: {err}");
        assert_same_digest(&before, &tree_digest(&data), what);
    }

    ok(run(&runbook, &[], b"y\n"), "runbook, answer y");
    assert!(!has_after_snapshot(&db));
    assert_eq!(
        fs::read(data.join("assets").join(&asset)).unwrap(),
        fs::read(orig.join("assets").join(&asset)).unwrap()
    );
}

#[test]
fn tenant_and_control_plane_scopes_restore_only_their_files() {
    let s = Scratch::new();
    let data = s.path("data");
    tiny_data_path(&data);
    s.ok(&["init"]);
    let m = s.snapshot(&data);
    let id = m["id"].as_str().unwrap().to_string();
    let b = &m["boundary"];
    let with_archives: Vec<String> = b["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["archive_files"].as_u64().unwrap() > 0)
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    let t = with_archives
        .first()
        .expect("a tenant with archives of its own")
        .clone();
    let orig = s.path("orig");
    copy_tree(&data, &orig);
    let all_dbs: Vec<PathBuf> = std::iter::once(data.join("hitkeep.db"))
        .chain(
            tenants(&data)
                .iter()
                .map(|u| data.join("tenants").join(u).join("hitkeep.db")),
        )
        .collect();
    touch_dbs(&all_dbs);
    // One of this tenant's archives and one default-tenant archive are lost.
    let t_archive = PathBuf::from("archive/tenants")
        .join(&t)
        .join(&files_under(&data.join("archive/tenants").join(&t))[0]);
    let default_archive = fs::read_dir(data.join("archive"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_file())
        .unwrap();
    fs::remove_file(data.join(&t_archive)).unwrap();
    fs::remove_file(&default_archive).unwrap();

    let tdb = PathBuf::from("tenants").join(&t).join("hitkeep.db");
    let before = tree_digest(&data);
    s.ok(&[
        "restore",
        "--snapshot",
        &id,
        "--data-path",
        data.to_str().unwrap(),
        "--tenant",
        &t,
        "--yes",
    ]);
    let after = tree_digest(&data);
    let ch = changed(&before, &after);
    let aside: Vec<&PathBuf> = ch
        .iter()
        .filter(|p| {
            p.to_str()
                .unwrap()
                .starts_with(&format!("{}.pre-restore.", tdb.display()))
        })
        .collect();
    assert_eq!(aside.len(), 1, "{ch:?}");
    let want: BTreeSet<PathBuf> = [tdb.clone(), t_archive.clone(), aside[0].clone()].into();
    assert_eq!(ch, want, "--tenant {t} changed other files");
    assert_eq!(
        fs::read(data.join(&tdb)).unwrap(),
        fs::read(orig.join(&tdb)).unwrap()
    );
    assert_eq!(
        fs::metadata(data.join(&tdb)).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!default_archive.exists());
    assert!(has_after_snapshot(&data.join("hitkeep.db")));

    let before = after;
    s.ok(&[
        "restore",
        "--snapshot",
        &id,
        "--data-path",
        data.to_str().unwrap(),
        "--control-plane",
        "--yes",
    ]);
    let ch = changed(&before, &tree_digest(&data));
    let names: Vec<String> = ch.iter().map(|p| p.display().to_string()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"hitkeep.db".to_string()), "{names:?}");
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("hitkeep.db.pre-restore.")),
        "{names:?}"
    );
    assert_eq!(
        fs::read(data.join("hitkeep.db")).unwrap(),
        fs::read(orig.join("hitkeep.db")).unwrap()
    );
    for u in tenants(&data).iter().filter(|u| **u != t) {
        assert!(has_after_snapshot(
            &data.join("tenants").join(u).join("hitkeep.db")
        ));
    }

    // A tenant the snapshot does not hold is refused, naming it, and
    // changes nothing.
    let before = tree_digest(&data);
    let unknown = "00000000-0000-0000-0000-000000000000";
    let err = s.fails(&[
        "restore",
        "--snapshot",
        &id,
        "--data-path",
        data.to_str().unwrap(),
        "--tenant",
        unknown,
        "--yes",
    ]);
    assert!(err.contains(unknown) && err.contains(&id), "{err}");
    assert_eq!(tree_digest(&data), before);
    // The scopes and places of an in-place restore mean nothing with
    // --target: refused, not ignored.
    let target = s.path("elsewhere");
    for extra in [
        vec!["--tenant", t.as_str()],
        vec!["--control-plane"],
        vec!["--db", "x.db"],
        vec!["--archive-path", "arch"],
        vec!["--with-wal"],
        vec!["--force"],
    ] {
        let mut args = vec![
            "restore",
            "--snapshot",
            &id,
            "--target",
            target.to_str().unwrap(),
        ];
        args.extend(&extra);
        let out = s.cairn(&args);
        assert!(!out.status.success(), "{extra:?} accepted with --target");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("cannot be used with"),
            "{extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!target.exists(), "{extra:?}");
    }
}

/// A WAL written after the snapshot, beside a database the restore leaves
/// alone (identical to the snapshot's) or creates (the db file was lost),
/// must go aside too: DuckDB would replay it on open, so the "restored"
/// database would hold data the snapshot never had (here a whole table),
/// or another database's WAL would be replayed onto it. (Regression: only
/// WALs beside replaced databases were moved aside.)
#[test]
fn stale_wal_beside_an_identical_or_missing_db_is_moved_aside() {
    let s = Scratch::new();
    let (data, id) = setup(&s);
    let ts = tenants(&data);
    let (same, lost) = (
        data.join("tenants").join(&ts[0]).join("hitkeep.db"),
        data.join("tenants").join(&ts[1]).join("hitkeep.db"),
    );
    // Writes that only reached the WAL (no checkpoint; the process dies).
    for db in [&same, &lost] {
        let out = Command::new("python3")
            .arg("-c")
            .arg(
                "import duckdb, os, sys\n\
                 c = duckdb.connect(sys.argv[1], config={'wal_autocheckpoint': '1GB'})\n\
                 c.execute('CREATE TABLE after_snapshot(x INTEGER)')\n\
                 c.execute('INSERT INTO after_snapshot VALUES (1)')\n\
                 os._exit(0)\n",
            )
            .arg(db)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(PathBuf::from(format!("{}.wal", db.display())).exists());
    }
    fs::remove_file(&lost).unwrap();
    ok(
        run(
            &runbook_args(&s.store(), &id, &data, &data.join("hitkeep.db"), true),
            &[],
            b"",
        ),
        "runbook",
    );
    let wals: Vec<PathBuf> = files_under(&data)
        .into_iter()
        .filter(|p| p.to_str().unwrap().ends_with(".wal"))
        .collect();
    assert!(
        wals.is_empty(),
        "stale WALs left beside restored databases: {wals:?}"
    );
    assert!(
        !has_after_snapshot(&same),
        "restored db shows post-snapshot writes"
    );
    assert!(
        !has_after_snapshot(&lost),
        "restored db shows post-snapshot writes"
    );
}

/// The aside name has a one-second stamp: a second restore within the
/// same second must not move the first restore's result onto the first
/// restore's aside (`rename` replaces), or the original is gone for good.
/// (Regression: it did.)
#[test]
fn restores_in_the_same_second_keep_every_original() {
    let s = Scratch::new();
    let data = s.path("data");
    fs::create_dir_all(data.join("tenants")).unwrap();
    let db = data.join("hitkeep.db");
    fs::write(&db, b"snapshot one").unwrap();
    s.ok(&["init"]);
    let one = s.snapshot(&data)["id"].as_str().unwrap().to_string();
    fs::write(&db, b"snapshot two").unwrap();
    let two = s.snapshot(&data)["id"].as_str().unwrap().to_string();
    let restore = |id: &str| -> Value {
        parse_json(&s.ok(&[
            "--json",
            "restore",
            "--snapshot",
            id,
            "--data-path",
            data.to_str().unwrap(),
            "--yes",
        ]))
    };
    for _ in 0..20 {
        for f in files_under(&data) {
            if f.to_str().unwrap().contains(".pre-restore.") {
                fs::remove_file(data.join(f)).unwrap();
            }
        }
        fs::write(&db, b"the original").unwrap();
        let a = restore(&one);
        let b = restore(&two);
        // The second restore's aside gets a `.1` suffix when its stamp
        // equals the first's.
        let stamp_only = |v: &Value| v.to_string().replace(".1\"", "\"");
        if stamp_only(&a["moved_aside"]) != stamp_only(&b["moved_aside"]) {
            continue; // a second boundary fell between them: try again
        }
        let kept = files_under(&data)
            .iter()
            .any(|f| fs::read(data.join(f)).unwrap() == b"the original");
        assert!(
            kept,
            "the original hitkeep.db is gone: asides {}",
            b["moved_aside"]
        );
        return;
    }
    panic!("never got two restores within one second");
}
