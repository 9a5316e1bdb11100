//! Snapshot → restore round trips on real HitKeep-shaped data paths.

use crate::common::*;

/// A generated data path aged several hours: every snapshot restores
/// byte-identically (with and without fsyncs), an unchanged snapshot adds
/// almost nothing, and an hour of traffic adds far less than the data path.
#[test]
fn aged_data_path_round_trips_every_snapshot() {
    let s = Scratch::new();
    let data = s.path("data");
    gen(&[
        "create",
        data.to_str().unwrap(),
        "--scale",
        "tiny",
        "--seed",
        "3",
    ]);
    s.ok(&["init"]);
    let mut copies = Vec::new();
    for hour in 0..3 {
        if hour > 0 {
            gen(&[
                "age",
                data.to_str().unwrap(),
                "--hours",
                "1",
                "--seed",
                &format!("{}", 10 + hour),
            ]);
        }
        let snap = s.snapshot(&data);
        let copy = s.path(&format!("copy{hour}"));
        copy_tree(&data, &copy);
        copies.push((snap["id"].as_str().unwrap().to_string(), copy));
        if hour > 0 {
            let logical = snap["logical_bytes"].as_u64().unwrap();
            let growth = snap["store_growth"].as_u64().unwrap();
            assert!(
                growth * 5 < logical,
                "hour {hour}: store grew {growth} of {logical}"
            );
        }
    }
    // Unchanged data path: nothing read, (almost) nothing added.
    let same = s.snapshot(&data);
    assert_eq!(same["bytes_read"].as_u64(), Some(0));
    assert!(same["store_growth"].as_u64().unwrap() < 4096, "{same}");
    for (id, copy) in &copies {
        let target = s.path(&format!("restore-{id}"));
        s.ok(&[
            "restore",
            "--snapshot",
            id,
            "--target",
            target.to_str().unwrap(),
        ]);
        assert_same_tree(copy, &target);
        // Without fsyncs: the same files, just not waited for.
        let unsynced = s.path(&format!("restore-nosync-{id}"));
        s.ok(&[
            "restore",
            "--snapshot",
            id,
            "--no-sync",
            "--target",
            unsynced.to_str().unwrap(),
        ]);
        assert_same_tree(copy, &unsynced);
    }
    // Never without fsyncs over a live data path.
    let out = s.cairn(&[
        "restore",
        "--no-sync",
        "--data-path",
        data.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-sync"));
}

/// Full re-read gives the same content as the fast path, and the index
/// can be deleted and rebuilt without losing anything.
#[test]
fn full_read_and_index_rebuild() {
    let s = Scratch::new();
    let data = s.path("data");
    gen(&[
        "create",
        data.to_str().unwrap(),
        "--scale",
        "tiny",
        "--seed",
        "5",
    ]);
    s.ok(&["init"]);
    s.snapshot(&data);
    let full = s.ok(&[
        "--json",
        "snapshot",
        "--full-read",
        "--data-path",
        data.to_str().unwrap(),
    ]);
    let full: serde_json::Value = serde_json::from_str(&full).unwrap();
    assert!(full["bytes_read"].as_u64().unwrap() > 0);
    assert_eq!(
        full["new_data_bytes"].as_u64(),
        Some(0),
        "re-read found new data: {full}"
    );
    std::fs::remove_dir_all(s.store().join("index")).unwrap();
    let list = s.ok(&["--json", "list"]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    let target = s.path("restored");
    s.ok(&[
        "restore",
        "--snapshot",
        "latest",
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_same_tree(&data, &target);
}

/// Total bytes of the DuckDB database files under `data`.
fn db_bytes(data: &std::path::Path) -> u64 {
    files_under(data)
        .iter()
        .map(|p| data.join(p))
        .filter(|p| is_duckdb_file(p))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

/// After an hour of traffic only the DuckDB blocks whose head (DuckDB's
/// block checksum) changed are read, the snapshot still restores byte for
/// byte, and a database is read whole at least once every 24 snapshots
/// (and whenever `--full-read` asks).
#[test]
fn unchanged_duckdb_blocks_are_not_read_and_a_full_read_comes_back() {
    let s = Scratch::new();
    let data = s.path("data");
    tiny_data_path(&data);
    s.ok(&["init"]);
    let first = s.snapshot(&data);
    age(&data, 1, 5);
    let second = s.snapshot(&data);
    let copy = s.path("copy");
    copy_tree(&data, &copy);
    let read = second["bytes_read"].as_u64().unwrap();
    let dbs = db_bytes(&data);
    eprintln!("after one hour: {read} bytes read of {dbs} bytes of databases");
    assert!(read * 2 < dbs, "{read} bytes read of {dbs}");
    let target = s.path("restored");
    restore_to(&s, second["id"].as_str().unwrap(), &target);
    assert_same_tree(&copy, &target);
    assert!(first["bytes_read"].as_u64().unwrap() >= dbs / 2);

    // The control-plane database, touched (same bytes, new mtime) before
    // each snapshot: 23 snapshots in a row read its header area only, then
    // one reads it whole.
    let db = data.join("hitkeep.db");
    let size = std::fs::metadata(&db).unwrap().len();
    let mut whole = Vec::new();
    for k in 0..24u64 {
        let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
        f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(k + 1))
            .unwrap();
        drop(f);
        let snap = s.snapshot(&data);
        let read = snap["bytes_read"].as_u64().unwrap();
        whole.push(read >= size);
        if read < size {
            assert!(read <= 64 * 1024, "round {k}: {read} bytes read");
        }
    }
    assert_eq!(
        whole.iter().filter(|w| **w).count(),
        1,
        "one whole read in 24 rounds: {whole:?}"
    );
    let full = parse_json(&s.ok(&[
        "--json",
        "snapshot",
        "--full-read",
        "--data-path",
        data.to_str().unwrap(),
    ]));
    assert!(full["bytes_read"].as_u64().unwrap() >= dbs);
    let target = s.path("restored-last");
    restore_to(&s, full["id"].as_str().unwrap(), &target);
    assert_same_tree(&data, &target);
}

/// DuckDB's block checksum (of the block after its 8-byte head).
fn duckdb_checksum(body: &[u8]) -> u64 {
    body.chunks_exact(8).fold(5381u64, |r, w| {
        r ^ u64::from_le_bytes(w.try_into().unwrap()).wrapping_mul(0xbf58_476d_1ce4_e5b9)
    })
}

/// A block caught half-written (its new head on disk, its body not yet)
/// is not taken unread by the next snapshot once the write completes: a
/// block is only tagged for reuse when its body matches its checksum.
#[test]
fn a_block_caught_half_written_is_read_again() {
    const HEADER_AREA: usize = 12 * 1024;
    const BLOCK: usize = 256 * 1024;
    let s = Scratch::new();
    let data = s.path("data");
    tiny_data_path(&data);
    s.ok(&["init"]);
    let db = data.join("hitkeep.db");
    let whole = std::fs::read(&db).unwrap();
    let at = (0..)
        .map(|k| HEADER_AREA + k * BLOCK)
        .take_while(|off| off + BLOCK <= whole.len())
        .find(|&off| {
            let head = u64::from_le_bytes(whole[off..off + 8].try_into().unwrap());
            head != 0 && duckdb_checksum(&whole[off + 8..off + BLOCK]) == head
        })
        .expect("a block whose checksum verifies");
    let mut torn = whole.clone();
    torn[at + BLOCK / 2] ^= 0x5a;
    std::fs::write(&db, &torn).unwrap();
    s.snapshot(&data);
    // The write completes: same head, the body it belongs with.
    std::fs::write(&db, &whole).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    drop(f);
    let second = s.snapshot(&data);
    assert!(
        second["bytes_read"].as_u64().unwrap() < whole.len() as u64,
        "a partial read: {second}"
    );
    let target = s.path("restored");
    restore_to(&s, second["id"].as_str().unwrap(), &target);
    let restored = std::fs::read(target.join("hitkeep.db")).unwrap();
    assert!(
        restored == whole,
        "the restored hitkeep.db differs from the file"
    );
}
