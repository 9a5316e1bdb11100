//! Restore refuses what it must: a non-empty target, unsafe names; and a
//! damaged chunk fails only the files that need it.

use std::fs;

use crate::common::*;

fn small_tree(root: &std::path::Path) {
    fs::create_dir_all(root.join("a/b")).unwrap();
    fs::write(root.join("a/b/one.txt"), b"one").unwrap();
    fs::write(root.join("two.bin"), vec![7u8; 300_000]).unwrap();
    std::os::unix::fs::symlink("a/b/one.txt", root.join("link")).unwrap();
}

#[test]
fn non_empty_target_is_refused_unless_overwrite() {
    let s = Scratch::new();
    let data = s.path("data");
    small_tree(&data);
    s.ok(&["init"]);
    s.snapshot(&data);
    let target = s.path("t");
    fs::create_dir_all(&target).unwrap();
    fs::write(target.join("keep"), b"x").unwrap();
    let err = s.fails(&["restore", "--target", target.to_str().unwrap()]);
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(fs::read(target.join("keep")).unwrap(), b"x");
    s.ok(&[
        "restore",
        "--overwrite",
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_eq!(fs::read(target.join("a/b/one.txt")).unwrap(), b"one");
}

#[test]
fn restored_tree_matches_including_symlinks_and_modes() {
    let s = Scratch::new();
    let data = s.path("data");
    small_tree(&data);
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(data.join("two.bin"), fs::Permissions::from_mode(0o600)).unwrap();
    s.ok(&["init"]);
    s.snapshot(&data);
    let target = s.path("t");
    s.ok(&["restore", "--target", target.to_str().unwrap()]);
    assert_same_tree(&data, &target);
}

#[test]
fn damaged_pack_fails_named_files_and_restores_the_rest() {
    let s = Scratch::new();
    let data = s.path("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("small.txt"), b"small and fine").unwrap();
    let mut big = vec![0u8; 2 << 20];
    blake3::Hasher::new().finalize_xof().fill(&mut big);
    fs::write(data.join("big.bin"), &big).unwrap();
    s.ok(&["init"]);
    s.snapshot(&data);
    // Damage the middle of every data pack (metadata packs are small).
    for e in fs::read_dir(s.store().join("packs")).unwrap() {
        let p = e.unwrap().path();
        let mut bytes = fs::read(&p).unwrap();
        if bytes.len() > 1 << 20 {
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0xff;
            fs::write(&p, bytes).unwrap();
        }
    }
    let target = s.path("t");
    let err = s.fails(&["restore", "--target", target.to_str().unwrap()]);
    assert!(err.contains("big.bin"), "{err}");
    assert!(!target.join("big.bin").exists());
    assert_eq!(
        fs::read(target.join("small.txt")).unwrap(),
        b"small and fine"
    );
}

/// Names as long as a file system takes (255 bytes: plain, multi-byte
/// text, not text at all, and two that share their first 240 bytes)
/// restore, though restore's temp names add to them.
#[test]
fn names_of_255_bytes_restore() {
    use std::os::unix::ffi::OsStrExt;
    let s = Scratch::new();
    let data = s.path("data");
    fs::create_dir_all(&data).unwrap();
    let names: Vec<Vec<u8>> = vec![
        vec![b'x'; 255],
        [vec![b'y'; 240], b"-first-name-abc".to_vec()].concat(),
        [vec![b'y'; 240], b"-other-name-abc".to_vec()].concat(),
        "é".repeat(127).into_bytes(),
        [vec![0xffu8; 200], vec![b'z'; 55]].concat(),
    ];
    for (i, n) in names.iter().enumerate() {
        assert!(n.len() >= 254);
        let name = std::ffi::OsStr::from_bytes(n);
        fs::write(data.join(name), vec![i as u8; 1000 + i]).unwrap();
    }
    s.ok(&["init"]);
    s.snapshot(&data);
    let target = s.path("t");
    s.ok(&["restore", "--target", target.to_str().unwrap()]);
    assert_same_tree(&data, &target);
    // Over an existing target too.
    s.ok(&[
        "restore",
        "--overwrite",
        "--no-sync",
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_same_tree(&data, &target);
}

/// A restore target may itself be a symlink to a directory (a mount point
/// linked in place); the files land in the directory it names.
#[test]
fn a_target_that_is_a_symlink_to_a_directory_is_followed() {
    let s = Scratch::new();
    let data = s.path("data");
    small_tree(&data);
    s.ok(&["init"]);
    s.snapshot(&data);
    let real = s.path("real");
    fs::create_dir(&real).unwrap();
    let link = s.path("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    s.ok(&["restore", "--target", link.to_str().unwrap()]);
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_same_tree(&data, &real);
    // A link to nothing is refused, naming it.
    let dangling = s.path("dangling");
    std::os::unix::fs::symlink(s.path("nowhere"), &dangling).unwrap();
    let err = s.fails(&["restore", "--target", dangling.to_str().unwrap()]);
    assert!(err.contains(dangling.to_str().unwrap()), "{err}");
    assert!(!s.path("nowhere").exists());
}

/// An `--overwrite` restore over a target holding something of another
/// kind where the snapshot puts a file, directory or symlink is refused
/// before anything is written, naming what is in the way; a symlink where
/// a directory goes is never followed.
#[test]
fn an_overwrite_meeting_another_kind_is_refused_before_writing() {
    let s = Scratch::new();
    let data = s.path("data");
    small_tree(&data);
    s.ok(&["init"]);
    s.snapshot(&data);
    let outside = s.path("outside");
    fs::create_dir(&outside).unwrap();
    type Setup = fn(&std::path::Path, &std::path::Path);
    let cases: [(&str, Setup, &str); 4] = [
        (
            "a",
            |t, _| fs::write(t.join("a"), b"file").unwrap(),
            "a file where the snapshot has a directory",
        ),
        (
            "two.bin",
            |t, _| fs::create_dir(t.join("two.bin")).unwrap(),
            "a directory where the snapshot has a file",
        ),
        (
            "link",
            |t, _| fs::create_dir(t.join("link")).unwrap(),
            "a directory where the snapshot has a symlink",
        ),
        (
            "a",
            |t, o| std::os::unix::fs::symlink(o, t.join("a")).unwrap(),
            "a symlink where the snapshot has a directory",
        ),
    ];
    for (i, (name, setup, want)) in cases.into_iter().enumerate() {
        let target = s.path(&format!("t{i}"));
        fs::create_dir(&target).unwrap();
        setup(&target, &outside);
        let before = files_under(&target);
        let err = s.fails(&[
            "restore",
            "--overwrite",
            "--target",
            target.to_str().unwrap(),
        ]);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains(&target.join(name).display().to_string()) && err.contains(want),
            "{err}"
        );
        assert_eq!(
            files_under(&target),
            before,
            "{want}: the target was written to"
        );
        assert_eq!(files_under(&outside), Vec::<std::path::PathBuf>::new());
    }
}
