//! Test gates: with `CAIRN_PAUSE=<name>:<path>`, a run reaching the point
//! `name` writes `<path>.reached` and waits while `<path>` exists (ten
//! minutes at most), so a test can act at an exact point of a command
//! (snapshot during a prune, SIGKILL in the middle of a replication).

use std::fs;
use std::path::Path;

/// A gate for tests: with `CAIRN_PAUSE=<name>:<path>`, reaching point
/// `name` creates `<path>.reached` and waits (up to ten minutes) while the
/// file `<path>` exists, so a test can run other processes at exactly
/// this point.
pub(crate) fn pause_point(name: &str) {
    let Ok(v) = std::env::var("CAIRN_PAUSE") else {
        return;
    };
    let Some(gate) = v.strip_prefix(name).and_then(|r| r.strip_prefix(':')) else {
        return;
    };
    let _ = fs::write(format!("{gate}.reached"), b"");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while Path::new(gate).exists() && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
