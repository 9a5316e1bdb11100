#!/usr/bin/env python3
"""Builds a large DuckDB-shaped data path from a real generated one, fast.

    python3 benches/synth_large.py SRC_DATA_PATH DEST --target-bytes 10000000000

The generator (`tests/hitkeep_gen.py`) needs hours for 10 GB on a 2-core
machine. This takes the largest DuckDB file of SRC and writes copies of it
into DEST/tenants/<uuid>/hitkeep.db until DEST holds --target-bytes: each
copy keeps the real 12 KiB header area and the real blocks' bytes (so
compression behaves as on real data), with the first 8 bytes of every
4 KiB page after the header replaced by (copy number, page number), so no
page of one copy deduplicates against another. The rest of SRC (control
plane, archives, assets) is copied as it is. For memory and unchanged-
snapshot measurements at scale, not for store growth.
"""
import argparse
import os
import shutil
import struct
import uuid


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dest")
    ap.add_argument("--target-bytes", type=int, required=True)
    a = ap.parse_args()
    shutil.copytree(a.src, a.dest, symlinks=True)
    dbs = []
    for root, _, files in os.walk(a.src):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                head = fh.read(16)
            if len(head) == 16 and head[8:12] == b"DUCK":
                dbs.append((os.path.getsize(p), p))
    size, largest = max(dbs)
    with open(largest, "rb") as fh:
        src = fh.read()
    header, body = src[:12288], src[12288:]
    total = sum(
        os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(a.dest) for f in fs
    )
    copy = 0
    while total < a.target_bytes:
        copy += 1
        d = os.path.join(a.dest, "tenants", str(uuid.UUID(int=copy)))
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "hitkeep.db"), "wb") as out:
            out.write(header)
            parts = []
            for page in range(len(body) // 4096):
                at = page * 4096
                parts.append(struct.pack("<II", copy, page))
                parts.append(body[at + 8 : at + 4096])
                if len(parts) >= 8192:
                    out.write(b"".join(parts))
                    parts = []
            parts.append(body[(len(body) // 4096) * 4096 :])
            out.write(b"".join(parts))
        total += size
    print(f"{copy} copies of {largest} ({size} bytes); {total} bytes in {a.dest}")


if __name__ == "__main__":
    main()
