//! `cairn repair`: a damaged pack loses only its damaged chunks, and a
//! repair with the live data path heals every snapshot.

use std::fs;

use crate::common::*;

#[test]
fn repair_drops_damage_and_heals_from_the_data_path() {
    let s = Scratch::new();
    let data = s.path("data");
    gen(&[
        "create",
        data.to_str().unwrap(),
        "--scale",
        "tiny",
        "--seed",
        "21",
    ]);
    s.ok(&["init"]);
    s.snapshot(&data);
    let copy = s.path("copy");
    copy_tree(&data, &copy);
    // Flip a byte in the middle of the largest pack.
    let mut packs: Vec<_> = fs::read_dir(s.store().join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    packs.sort_by_key(|p| std::cmp::Reverse(fs::metadata(p).unwrap().len()));
    let mut bytes = fs::read(&packs[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(&packs[0], &bytes).unwrap();
    let out = s.cairn(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(1), "check must see the damage");

    // A dry run changes nothing.
    let dry = s.cairn(&["repair", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(1));
    assert!(packs[0].exists());

    s.ok(&["repair", "--data-path", data.to_str().unwrap()]);
    assert!(!packs[0].exists(), "the damaged pack is replaced");
    s.ok(&["check", "--read-data"]);
    let list: serde_json::Value = serde_json::from_str(&s.ok(&["--json", "list"])).unwrap();
    let first = list[0]["id"].as_str().unwrap().to_string();
    let target = s.path("restored");
    s.ok(&[
        "restore",
        "--snapshot",
        &first,
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_same_tree(&copy, &target);
    let reports: Vec<_> = fs::read_dir(s.store().join("repairs")).unwrap().collect();
    assert_eq!(reports.len(), 1);
}

#[test]
fn repair_without_a_source_names_what_stays_damaged() {
    let s = Scratch::new();
    let data = s.path("data");
    gen(&[
        "create",
        data.to_str().unwrap(),
        "--scale",
        "tiny",
        "--seed",
        "22",
    ]);
    s.ok(&["init"]);
    s.snapshot(&data);
    let mut packs: Vec<_> = fs::read_dir(s.store().join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    packs.sort_by_key(|p| std::cmp::Reverse(fs::metadata(p).unwrap().len()));
    let mut bytes = fs::read(&packs[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(&packs[0], &bytes).unwrap();
    let out = s.cairn(&["repair"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("still damaged: snapshot"), "{text}");
    // The rest of the store reads clean: only missing chunks remain.
    let check = s.cairn(&["check", "--read-data"]);
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(report.contains("missing"), "{report}");
}
