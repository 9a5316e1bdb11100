//! Writes the seed inputs of every fuzz target: a few valid encodings made
//! with cairn's own encoders, plus hand-mutated ones (newer versions,
//! unknown codecs, bad lengths, unsorted trees, damaged index records).
//!
//! ```sh
//! cd fuzz && cargo run --example gen_seeds            # into fuzz/corpus/
//! cd fuzz && cargo run --example gen_seeds -- DIR     # into DIR/<target>/
//! ```
//! Files are named `seed-<what>`; running it again rewrites the same files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cairn_format::envelope::{self, Kind};
use cairn_format::pack::{self, BlobKind, PackBuilder, PackEntry, PackTrailer};
use cairn_format::{
    ArchiveLocation, Boundary, ChunkId, ChunkList, ContentLayout, DbCapture, EntryClass,
    EntryKind, EntryMeta, FileContent, ListChild, ListNode, Manifest, PackId, SnapshotId,
    SnapshotStats, SourceRoot, StoreConfig, TenantSummary, TreeEntry, TreeNode,
};
use cairn_fuzz::checks_format::{fix_envelope, TRAILER_KIND};

struct Out(PathBuf);

impl Out {
    fn put(&self, target: &str, what: &str, bytes: &[u8]) {
        let dir = self.0.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{what}")), bytes).unwrap();
    }
}

/// `bytes` with byte `at` set to `v` and the envelope checksum made valid again.
fn patched(bytes: &[u8], at: usize, v: u8) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at] = v;
    fix_envelope(&b).unwrap_or(b)
}

fn noise(len: usize, seed: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(seed)
        .finalize_xof()
        .fill(&mut out);
    out
}

fn file_content(layout: ContentLayout, chunks: ChunkList) -> FileContent {
    FileContent {
        size: 8192,
        hash: *blake3::hash(b"content").as_bytes(),
        layout,
        chunks,
    }
}

fn child(n: u8, len: u64, tag: u64) -> ListChild {
    ListChild {
        id: ChunkId::of(&[n]),
        len,
        tag,
    }
}

fn entry(name: &[u8], kind: EntryKind) -> TreeEntry {
    TreeEntry {
        name: name.to_vec(),
        meta: EntryMeta {
            mode: 0o100644,
            mtime_ns: 1_772_971_200_000_000_000,
            ctime_ns: 1_772_971_200_500_000_000,
            ino: 4242,
            dev: 66306,
        },
        kind,
        class: EntryClass::Other,
    }
}

fn classed(mut e: TreeEntry, class: EntryClass) -> TreeEntry {
    e.class = class;
    e
}

fn main() {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let out = Out(dir);

    // store_config
    let cfg = StoreConfig::new([7; 16]);
    let good = cfg.encode().unwrap();
    out.put("store_config", "default", &good);
    let mut small = StoreConfig::new(*b"0123456789abcdef");
    small.chunking.cdc_min = 64;
    small.chunking.cdc_avg = 64;
    small.chunking.cdc_max = 16 << 20;
    small.chunking.duckdb_chunk = 262_144;
    small.compression.zstd_level = 22;
    small.pack_target = 1 << 32;
    out.put("store_config", "edges", &small.encode().unwrap());
    let newer = StoreConfig {
        format_version: 2,
        ..cfg.clone()
    };
    out.put("store_config", "newer-format", &newer.encode().unwrap());
    let keyed = StoreConfig {
        chunk_id_scheme: "blake3-keyed".into(),
        ..cfg.clone()
    };
    out.put("store_config", "keyed-scheme", &keyed.encode().unwrap());
    out.put("store_config", "envelope-v2", &patched(&good, 4, 2));
    out.put("store_config", "codec-2", &patched(&good, 6, 2));
    out.put("store_config", "truncated", &good[..good.len() - 5]);
    let mut bad_check = good.clone();
    *bad_check.last_mut().unwrap() ^= 1;
    out.put("store_config", "bad-checksum", &bad_check);

    // pack_parse, pack_trailer, frame_decode
    let text = b"0123456789abcdef 0123456789abcdef ".repeat(200);
    let rand = noise(3000, b"pack");
    let mut b = PackBuilder::new(Vec::new()).unwrap();
    let f1 = pack::encode_frame(&[&text[..], b"tail"].concat(), 3).unwrap();
    b.add_frame(
        &f1,
        &[
            (ChunkId::of(&text), BlobKind::Data, text.len() as u32),
            (ChunkId::of(b"tail"), BlobKind::Meta, 4),
        ],
    )
    .unwrap();
    let f2 = pack::encode_frame(&rand, 3).unwrap();
    b.add_frame(&f2, &[(ChunkId::of(&rand), BlobKind::Data, 3000)])
        .unwrap();
    let (_, trailer, _, two_frames) = b.finish().unwrap();
    out.put("pack_parse", "two-frames", &two_frames);
    let (_, _, _, empty) = PackBuilder::new(Vec::new()).unwrap().finish().unwrap();
    out.put("pack_parse", "empty", &empty);
    let mut small = PackBuilder::new(Vec::new()).unwrap();
    let f3 = pack::encode_frame(b"x", 1).unwrap();
    small
        .add_frame(&f3, &[(ChunkId::of(b"x"), BlobKind::Data, 1)])
        .unwrap();
    let (_, small_trailer, _, small) = small.finish().unwrap();
    out.put("pack_parse", "one-byte-chunk", &small);
    // A trailer entry pointing past the frames, checksum valid.
    let mut outside = small_trailer.clone();
    outside.entries[0].frame_offset = 1 << 40;
    let trailer_bytes = envelope::encode(TRAILER_KIND, &outside).unwrap();
    let mut bad_pack = small[..16 + f3.len()].to_vec();
    bad_pack.extend_from_slice(&trailer_bytes);
    bad_pack.extend_from_slice(&(trailer_bytes.len() as u32).to_le_bytes());
    bad_pack.extend_from_slice(b"CPKE");
    out.put("pack_parse", "entry-outside", &bad_pack);
    let mut newer_pack = small.clone();
    newer_pack[8] = 2;
    out.put("pack_parse", "newer-version", &newer_pack);
    let mut footer_len = small.clone();
    let n = footer_len.len();
    footer_len[n - 8..n - 4].copy_from_slice(&u32::MAX.to_le_bytes());
    out.put("pack_parse", "footer-too-long", &footer_len);

    let put_trailer = |what: &str, pack_len: u64, trailer: &PackTrailer| {
        let bytes = envelope::encode(TRAILER_KIND, trailer).unwrap();
        let mut input = pack_len.to_le_bytes().to_vec();
        input.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        input.extend_from_slice(b"CPKE");
        input.extend_from_slice(&bytes);
        out.put("pack_trailer", what, &input);
    };
    put_trailer("two-frames", two_frames.len() as u64, &trailer);
    put_trailer("empty", empty.len() as u64, &PackTrailer::default());
    put_trailer("one-byte-chunk", small.len() as u64, &small_trailer);
    put_trailer("entry-outside", bad_pack.len() as u64, &outside);
    let mut edge = small_trailer.clone();
    edge.entries.push(PackEntry {
        id: ChunkId::of(b"edge"),
        kind: BlobKind::Meta,
        frame_offset: u64::MAX - 4,
        frame_len: u32::MAX,
        offset: u32::MAX,
        len: u32::MAX,
    });
    put_trailer("overflowing-entry", small.len() as u64, &edge);
    put_trailer("pack-too-short", 20, &small_trailer);

    out.put("frame_decode", "zstd", &f1);
    out.put("frame_decode", "raw", &f2);
    out.put("frame_decode", "one-byte", &f3);
    out.put(
        "frame_decode",
        "empty",
        &pack::encode_frame(b"", 3).unwrap(),
    );
    let zeros = pack::encode_frame(&vec![0u8; 1 << 20], 3).unwrap();
    out.put("frame_decode", "zeros-1mib", &zeros);
    let mut lying = f1.clone();
    lying[4..8].copy_from_slice(&(pack::MAX_FRAME_RAW as u32).to_le_bytes());
    out.put("frame_decode", "raw-len-too-big", &lying);
    let mut codec = f3.clone();
    codec[0] = 7;
    out.put("frame_decode", "unknown-codec", &codec);

    // manifest_decode, tree_node_decode, list_node_decode, file_content_decode
    let inline = file_content(
        ContentLayout::Cdc,
        ChunkList::Inline(vec![child(1, 4096, 0), child(2, 4096, 0)]),
    );
    let duck = file_content(
        ContentLayout::DuckDb {
            block_size: 262_144,
            iteration: 9,
        },
        ChunkList::Tree {
            root: ChunkId::of(b"root"),
            level: 2,
        },
    );
    let whole = file_content(
        ContentLayout::Whole,
        ChunkList::Inline(vec![child(3, 10, 0)]),
    );
    for (what, fc) in [
        ("cdc-inline", &inline),
        ("duckdb-tree", &duck),
        ("whole", &whole),
    ] {
        out.put("file_content_decode", what, &fc.encode().unwrap());
    }
    out.put(
        "file_content_decode",
        "envelope-v0",
        &patched(&whole.encode().unwrap(), 4, 0),
    );
    // A delta (envelope version 2) and ones whose depth decode refuses.
    let delta_at = |depth| {
        file_content(
            ContentLayout::Delta {
                base: ChunkId::of(b"base record"),
                depth,
            },
            ChunkList::Inline(vec![child(4, 120, 0)]),
        )
    };
    let delta = delta_at(3);
    out.put("file_content_decode", "delta", &delta.encode().unwrap());
    out.put(
        "file_content_decode",
        "delta-depth-0",
        &delta_at(0).encode().unwrap(),
    );
    out.put(
        "file_content_decode",
        "delta-depth-33",
        &delta_at(33).encode().unwrap(),
    );

    let tree = TreeNode {
        entries: vec![
            classed(
                entry(b"hitkeep.db", EntryKind::File(duck.clone())),
                EntryClass::ControlPlaneDb,
            ),
            classed(
                entry(b"hitkeep.db.wal", EntryKind::File(whole.clone())),
                EntryClass::Wal(None),
            ),
            entry(b"latest", EntryKind::Symlink(b"tenants/x".to_vec())),
            classed(
                entry(b"site-1.parquet", EntryKind::File(inline.clone())),
                EntryClass::Archive {
                    tenant: Some("t1".into()),
                    site: "site-1".into(),
                },
            ),
            entry(b"tenants", EntryKind::Dir(ChunkId::of(b"tenants"))),
        ],
    };
    let tree_bytes = tree.encode().unwrap();
    out.put("tree_node_decode", "four-kinds", &tree_bytes);
    let with_delta = TreeNode {
        entries: vec![entry(b"events.parquet", EntryKind::File(delta.clone()))],
    };
    out.put(
        "tree_node_decode",
        "delta-file",
        &with_delta.encode().unwrap(),
    );
    out.put(
        "tree_node_decode",
        "empty",
        &TreeNode::default().encode().unwrap(),
    );
    // Decoded with its own kind so the sort check is what refuses it.
    let tree_kind = Kind {
        magic: *b"CTRE",
        version: 1,
        name: "tree node",
    };
    let mut unsorted = tree.clone();
    unsorted.entries.swap(0, 3);
    out.put(
        "tree_node_decode",
        "unsorted",
        &envelope::encode(tree_kind, &unsorted).unwrap(),
    );
    let mut dup = tree.clone();
    dup.entries[1].name = dup.entries[0].name.clone();
    out.put(
        "tree_node_decode",
        "duplicate-name",
        &envelope::encode(tree_kind, &dup).unwrap(),
    );
    let unsafe_names = TreeNode {
        entries: vec![
            entry(b"", EntryKind::Symlink(vec![])),
            entry(b".", EntryKind::Dir(ChunkId([0; 32]))),
            entry(b"..", EntryKind::Dir(ChunkId([0; 32]))),
            entry(b"a/b", EntryKind::Symlink(b"/etc/passwd".to_vec())),
            entry(b"nul\0", EntryKind::Symlink(vec![0])),
        ],
    };
    out.put(
        "tree_node_decode",
        "unsafe-names",
        &unsafe_names.encode().unwrap(),
    );

    let leaf = ListNode {
        level: 0,
        children: vec![child(1, 4096, 0xdead_beef), child(2, 4096, 7)],
    };
    out.put("list_node_decode", "leaf", &leaf.encode().unwrap());
    let inner = ListNode {
        level: 3,
        children: vec![child(9, u64::MAX, 0)],
    };
    out.put("list_node_decode", "inner", &inner.encode().unwrap());
    out.put(
        "list_node_decode",
        "empty",
        &ListNode {
            level: 255,
            children: vec![],
        }
        .encode()
        .unwrap(),
    );

    let mut labels = BTreeMap::new();
    labels.insert("reason".to_string(), "hourly".to_string());
    let manifest = Manifest {
        id: "2026-03-08T120000Z".parse().unwrap(),
        parent: Some("2026-03-08T110000Z".parse().unwrap()),
        hostname: "hitkeep-1".into(),
        cairn_version: "0.1.0".into(),
        finished_unix: 1_772_971_260,
        roots: vec![
            SourceRoot {
                label: "data".into(),
                path: "/var/lib/hitkeep/data".into(),
                tree: Some(ChunkId::of(&tree_bytes)),
                file: None,
            },
            SourceRoot {
                label: "db".into(),
                path: "/srv/hitkeep.db".into(),
                tree: None,
                file: Some(entry(b"hitkeep.db", EntryKind::File(inline.clone()))),
            },
        ],
        stats: SnapshotStats {
            files: 3,
            dirs: 2,
            logical_bytes: 1 << 30,
            ..SnapshotStats::default()
        },
        labels,
        boundary: Some(Boundary {
            db_path: "/var/lib/hitkeep/hitkeep.db".into(),
            data_path: "/var/lib/hitkeep/data".into(),
            archive: Some(ArchiveLocation::External("s3://bucket/archive".into())),
            control_plane: Some(DbCapture {
                path: "hitkeep.db".into(),
                root: "db".into(),
                size: 1 << 20,
                iteration: 12,
                wal: true,
            }),
            tenants: vec![TenantSummary {
                id: "t1".into(),
                db: None,
                archive_files: 2,
                archive_bytes: 4096,
                sites: vec!["site-1".into()],
            }],
            default_archive: (1, 2),
            excluded: vec!["tmp/x".into()],
            findings: vec!["tenant t0 vanished".into()],
            ..Boundary::default()
        }),
    };
    let manifest_bytes = manifest.encode().unwrap();
    out.put("manifest_decode", "two-roots", &manifest_bytes);
    let first = Manifest {
        id: SnapshotId::from_unix(i64::MIN),
        parent: None,
        hostname: String::new(),
        cairn_version: String::new(),
        finished_unix: i64::MAX,
        roots: vec![],
        stats: SnapshotStats::default(),
        labels: BTreeMap::new(),
        boundary: None,
    };
    out.put("manifest_decode", "extreme-ids", &first.encode().unwrap());
    out.put(
        "manifest_decode",
        "truncated",
        &manifest_bytes[..manifest_bytes.len() / 2],
    );

    // id_from_str
    for (what, text) in [
        ("snapshot", "2026-03-08T120000Z"),
        ("snapshot-min", "0000-01-01T000000Z"),
        ("snapshot-max", "9999-12-31T235959Z"),
        ("snapshot-leap-second", "2016-12-31T235960Z"),
        ("snapshot-colons", "2026-03-08T12:00:00Z"),
        ("latest", "latest"),
    ] {
        out.put("id_from_str", what, text.as_bytes());
    }
    out.put(
        "id_from_str",
        "chunk",
        ChunkId::of(b"x").to_hex().as_bytes(),
    );
    out.put(
        "id_from_str",
        "pack-upper",
        PackId::of(b"p").to_hex().to_uppercase().as_bytes(),
    );
    out.put(
        "id_from_str",
        "unix-negative",
        &(-62_167_219_201i64).to_le_bytes(),
    );

    // index_roundtrip: pack id, pack length, 22-byte entries.
    let mut rt = [7u8; 32].to_vec();
    rt.extend_from_slice(&(1u64 << 25).to_le_bytes());
    for (id, kind, fo, fl, o, l) in [
        (1u8, 0u8, 16u64, 100u32, 0u32, 40u32),
        (2, 1, 16, 100, 40, 48),
        (1, 1, 116, 12, 0, 0),
        (255, 0, u64::MAX, u32::MAX, u32::MAX, u32::MAX),
    ] {
        rt.push(id);
        rt.push(kind);
        rt.extend_from_slice(&fo.to_le_bytes());
        rt.extend_from_slice(&fl.to_le_bytes());
        rt.extend_from_slice(&o.to_le_bytes());
        rt.extend_from_slice(&l.to_le_bytes());
    }
    out.put("index_roundtrip", "four-entries", &rt);
    out.put("index_roundtrip", "no-entries", &rt[..40]);

    // index_records: flags, then (tree, key length, key, value length, value).
    let record = |tree: u8, key: &[u8], value: &[u8]| {
        let mut r = vec![tree, key.len() as u8];
        r.extend_from_slice(key);
        r.push(value.len() as u8);
        r.extend_from_slice(value);
        r
    };
    let pack_id = PackId::of(b"pack");
    let mut loc = 3u32.to_le_bytes().to_vec();
    loc.push(1);
    loc.extend_from_slice(&16u64.to_le_bytes());
    loc.extend_from_slice(&100u32.to_le_bytes());
    loc.extend_from_slice(&0u32.to_le_bytes());
    loc.extend_from_slice(&40u32.to_le_bytes());
    let mut pack_rec = 3u32.to_le_bytes().to_vec();
    pack_rec.extend_from_slice(&(1u64 << 25).to_le_bytes());
    let valid = [
        record(0, &ChunkId::of(b"a").0, &loc),
        record(1, &pack_id.0, &pack_rec),
        record(2, &3u32.to_be_bytes(), &pack_id.0),
        record(3, &1_772_971_200i64.to_be_bytes(), b"manifest"),
    ]
    .concat();
    out.put("index_records", "valid", &[&[0u8][..], &valid].concat());
    out.put(
        "index_records",
        "not-complete",
        &[&[1u8][..], &valid].concat(),
    );
    let mut bad_kind = loc.clone();
    bad_kind[4] = 2;
    let damaged = [
        record(0, &ChunkId::of(b"a").0, &bad_kind),
        record(0, &ChunkId::of(b"b").0, &loc[..24]),
        record(0, &ChunkId::of(b"c").0, &[9; 25]),
        record(1, &pack_id.0[..31], &pack_rec),
        record(2, &3u32.to_be_bytes(), &pack_id.0[..16]),
        record(3, b"short", b""),
    ]
    .concat();
    out.put("index_records", "damaged", &[&[0u8][..], &damaged].concat());
}
