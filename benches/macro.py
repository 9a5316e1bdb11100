#!/usr/bin/env python3
"""cairn vs restic on the same HitKeep data path, hour by hour.

    python3 benches/macro.py [--scale medium] [--hours 10] [--seed 1]
                             [--work ./bench-work] [--json OUT]
                             [--target-bytes B] [--runs N] [--no-restore]

What it does (all in --work, which is git-ignored and emptied first):

1. `tests/hitkeep_gen.py create data --scale S --seed N` makes a data path.
2. First snapshot with cairn and with restic (wall time, peak RSS, store
   size). The first snapshot is also taken `--runs - 1` more times into
   throwaway stores, cairn and restic interleaved, and the median is used.
3. For each of `--hours` hours: `hitkeep_gen.py age data --hours 1`, a copy
   of the data path (`cp -a`), then a snapshot with each tool: wall time,
   peak RSS, and store growth (apparent bytes of every file in the store
   directory: cairn's `index/` cache is excluded, and restic's cache lives
   outside its repository in `restic-cache/`, also excluded).
   The *floor* of each hour is computed from the data path (see `Floor`).
4. An unchanged snapshot (no change since the last): wall time and growth.
5. Verified restore of the last hourly snapshot with each tool, `--runs`
   times, median wall time (cairn verifies every chunk and file hash as it
   restores; restic runs with `--verify`). cairn fsyncs what it restores
   and restic does not, so cairn is timed a second way, with `--no-sync`. Then every cairn snapshot is
   restored and compared with `diff -r` to the copy taken at its hour, and
   the restic restore of the last one too.

Every timed command runs with a warm page cache: the data path (or, for
restores, the store) is read once right before the command. Peak RSS is
from GNU time (`/usr/bin/time -f %M`); CPU time from `os.wait4`. The load average is recorded
before each timed command, since the machine may be shared.

Needs: cairn built (`cargo build --release -p cairn-cli`), restic, GNU time, Python
3.11 with `duckdb` (for the generator) and `zstandard` (for the floor:
`pip install zstandard`).
"""

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GEN = os.path.join(ROOT, "tests", "hitkeep_gen.py")
PAGE = 4096
GROUP = 64 * 1024

try:
    import zstandard
except ImportError:  # pragma: no cover - reported at start
    zstandard = None


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# measuring commands


TIME = "/usr/bin/time"


def run(cmd, env=None, cwd=None, check=True):
    """Runs cmd; returns dict(wall_s, cpu_s, maxrss_kib, rc, stdout, stderr, load1).

    Peak RSS comes from GNU time (`/usr/bin/time -f %M`), not from this
    process's wait4: Linux carries a process's RSS high-water mark across
    fork and exec, so a child forked from this (large) Python process would
    report this process's RSS. GNU time is small, so its child's is true.
    CPU time (user + system, the command and its children) is from wait4.
    """
    load = os.getloadavg()[0]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as tf:
        t = time.perf_counter()
        p = subprocess.Popen([TIME, "-f", "%M", "-o", tf.name] + list(cmd), stdout=out, stderr=err, env=env, cwd=cwd)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        so, se = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        lines = [x for x in tf.read().split() if x.isdigit()]
        maxrss = int(lines[-1]) if lines else None
    r = dict(wall_s=wall, cpu_s=ru.ru_utime + ru.ru_stime, maxrss_kib=maxrss, rc=p.returncode, stdout=so,
             stderr=se, load1=load)
    if check and p.returncode != 0:
        raise RuntimeError(f"command failed ({p.returncode}): {' '.join(cmd)}\nstdout: {so[-2000:]}\nstderr: {se[-2000:]}")
    return r


def warm(*paths):
    """Reads every file under paths so the next command finds them in the page cache."""
    buf = bytearray(1 << 20)
    for root in paths:
        for dp, _, fns in os.walk(root):
            for fn in fns:
                p = os.path.join(dp, fn)
                try:
                    with open(p, "rb", buffering=0) as f:
                        while f.readinto(buf):
                            pass
                except OSError:
                    pass


def tree_bytes(root, exclude_top=()):
    """Apparent size of every regular file under root (like `du -sb`, minus
    directories), leaving out top-level entries named in exclude_top."""
    total = 0
    for dp, dns, fns in os.walk(root):
        if dp == root:
            dns[:] = [d for d in dns if d not in exclude_top]
            fns = [f for f in fns if f not in exclude_top]
        for fn in fns:
            p = os.path.join(dp, fn)
            if os.path.isfile(p) and not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def files_of(root):
    out = []
    for dp, dns, fns in os.walk(root):
        dns.sort()
        for fn in sorted(fns):
            p = os.path.join(dp, fn)
            if os.path.isfile(p) and not os.path.islink(p):
                out.append(p)
    return sorted(out)


# ---------------------------------------------------------------------------
# the floor


class Floor:
    """The floor: what an ideal page-level dedup store must add per snapshot.

    Every file is split into 4 KiB pages aligned in the file (the last one
    partial, taken as is). A page whose content was never seen before (in
    any file of any earlier snapshot, or earlier in this one) is new. New
    pages, in file order, are grouped into 64 KiB groups, and each group is
    compressed with zstd level 3; the floor is the sum of the compressed
    group sizes. Metadata is not counted.
    """

    def __init__(self):
        self.seen = set()
        self.cctx = zstandard.ZstdCompressor(level=3)

    def snapshot(self, root):
        floor = new_pages = new_raw = 0
        group = bytearray()
        for p in files_of(root):
            with open(p, "rb") as f:
                data = f.read()
            for o in range(0, len(data), PAGE):
                page = data[o:o + PAGE]
                h = hashlib.blake2b(page, digest_size=16).digest()
                if h in self.seen:
                    continue
                self.seen.add(h)
                new_pages += 1
                new_raw += len(page)
                group += page
                if len(group) >= GROUP:
                    floor += len(self.cctx.compress(bytes(group)))
                    group.clear()
        if group:
            floor += len(self.cctx.compress(bytes(group)))
        return dict(floor=floor, new_pages=new_pages, new_raw=new_raw)


# ---------------------------------------------------------------------------
# the two tools


class Cairn:
    name = "cairn"

    def __init__(self, binary, store):
        self.bin, self.store = binary, store

    def init(self):
        run([self.bin, "--store", self.store, "init"])

    def snapshot(self, data):
        r = run([self.bin, "--store", self.store, "snapshot", "--data-path", data, "--json"])
        j = json.loads(r["stdout"])
        r["id"] = j["id"]
        r["report"] = {k: j.get(k) for k in ("bytes_read", "files_unchanged", "new_chunks", "new_data_bytes",
                                              "new_meta_bytes", "added_pack_bytes", "store_growth", "seconds")}
        return r

    def restore(self, snap, target, sync=True):
        return run([self.bin, "--store", self.store, "restore", "--snapshot", snap, "--target", target, "--json"]
                   + ([] if sync else ["--no-sync"]))

    def size(self):
        return tree_bytes(self.store, exclude_top=("index",))

    def restored_root(self, target):
        return target


class Restic:
    name = "restic"

    def __init__(self, binary, repo, cache, data):
        self.bin, self.repo, self.cache, self.data = binary, repo, cache, data
        self.env = dict(os.environ, RESTIC_PASSWORD="cairn-bench")

    def base(self):
        return [self.bin, "--repo", self.repo, "--cache-dir", self.cache]

    def init(self):
        run(self.base() + ["init"], env=self.env)

    def snapshot(self, data):
        r = run(self.base() + ["backup", "--json", data], env=self.env)
        summary = [json.loads(line) for line in r["stdout"].splitlines() if '"summary"' in line]
        r["id"] = summary[-1]["snapshot_id"] if summary else "latest"
        r["report"] = {k: summary[-1].get(k) for k in ("files_new", "files_changed", "files_unmodified", "data_added",
                                                       "total_duration")} if summary else {}
        return r

    def restore(self, snap, target):
        return run(self.base() + ["restore", snap, "--target", target, "--verify"], env=self.env)

    def size(self):
        return tree_bytes(self.repo)

    def restored_root(self, target):
        return os.path.join(target, self.data.lstrip("/"))  # restic 0.14 restores /abs/DATA as TARGET/abs/DATA


def same_tree(a, b):
    r = subprocess.run(["diff", "-r", "-q", "--no-dereference", a, b], capture_output=True, text=True)
    return r.returncode == 0, (r.stdout + r.stderr)[-2000:]


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt_b(n):
    if n is None:
        return "-"
    for u in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or u == "GiB":
            return f"{n:.0f} {u}" if u == "B" else f"{n:.1f} {u}"
        n /= 1024


def ratio(a, b):
    return None if a is None or not b else a / b


def fr(x, nd=2):
    return "-" if x is None else f"{x:.{nd}f}"


# ---------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="medium", choices=["tiny", "small", "medium", "large"])
    ap.add_argument("--hours", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--target-bytes", type=int, default=None, help="passed to the generator's create")
    ap.add_argument("--work", default=os.path.join(ROOT, "bench-work"))
    ap.add_argument("--json", default=None, help="write all measurements here")
    ap.add_argument("--cairn", default=os.path.join(ROOT, "target", "release", "cairn"))
    ap.add_argument("--restic", default=shutil.which("restic") or "restic")
    ap.add_argument("--runs", type=int, default=3, help="repetitions of the first snapshot and of the restore")
    ap.add_argument("--no-restore", action="store_true", help="skip restores and the per-hour copies")
    ap.add_argument("--no-floor", action="store_true")
    ap.add_argument("--data", default=None, help="use this existing data path (copied into --work) instead of creating one")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--gen", default=GEN, help="the data path generator (default tests/hitkeep_gen.py)")
    args = ap.parse_args(argv)
    if zstandard is None and not args.no_floor:
        sys.exit("macro.py: the floor needs zstandard: pip install zstandard (or pass --no-floor)")
    for b in (args.cairn, args.restic, TIME):
        if not shutil.which(b):
            sys.exit(f"macro.py: {b} not found (cargo build --release -p cairn-cli; apt-get install restic time)")

    work = os.path.abspath(args.work)
    run_dir = os.path.join(work, f"macro-{args.scale}")
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    data = os.path.join(run_dir, "data")
    copies = os.path.join(run_dir, "copies")
    scratch = os.path.join(run_dir, "scratch")
    restores = os.path.join(run_dir, "restore")
    for d in (copies, scratch, restores):
        os.makedirs(d)
    result = dict(scale=args.scale, hours=args.hours, seed=args.seed, target_bytes=args.target_bytes,
                  cairn=os.path.abspath(args.cairn), gen=os.path.abspath(args.gen),
                  gen_sha256=hashlib.sha256(open(args.gen, "rb").read()).hexdigest(),
                  cairn_version=run([args.cairn, "--version"])["stdout"].strip(),
                  restic_version=run([args.restic, "version"])["stdout"].strip(),
                  nproc=os.cpu_count(), started=time.strftime("%Y-%m-%dT%H:%M:%S"))
    try:
        result["git"] = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                                       capture_output=True, text=True).stdout.strip()
    except OSError:
        pass

    # 1. data path
    t = time.time()
    if args.data:
        subprocess.run(["cp", "-a", os.path.abspath(args.data), data], check=True)
    else:
        cmd = [sys.executable, args.gen, "create", data, "--scale", args.scale, "--seed", str(args.seed)]
        if args.target_bytes:
            cmd += ["--target-bytes", str(args.target_bytes)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    result["data_bytes_h0"] = tree_bytes(data)
    log(f"data path: {fmt_b(result['data_bytes_h0'])} in {time.time() - t:.0f}s")

    cairn = Cairn(args.cairn, os.path.join(run_dir, "cairn-store"))
    restic = Restic(args.restic, os.path.join(run_dir, "restic-repo"), os.path.join(run_dir, "restic-cache"), data)
    tools = (cairn, restic)
    for tool in tools:
        tool.init()
    floor = None if args.no_floor else Floor()

    def keep_copy(h):
        if not args.no_restore:
            subprocess.run(["cp", "-a", data, os.path.join(copies, f"h{h:02d}")], check=True)

    def snap_both(h):
        row = dict(hour=h, data_bytes=tree_bytes(data))
        for tool in tools:
            before = tool.size()
            warm(data)
            r = tool.snapshot(data)
            row[tool.name] = dict(wall_s=r["wall_s"], cpu_s=r["cpu_s"], maxrss_kib=r["maxrss_kib"], load1=r["load1"], id=r["id"],
                                  growth=tool.size() - before, store_bytes=tool.size(), report=r["report"])
        row["cairn"]["index_bytes"] = tree_bytes(os.path.join(cairn.store, "index"))
        row["restic"]["cache_bytes"] = tree_bytes(restic.cache)
        return row

    # 2. first snapshot
    keep_copy(0)
    rows = []
    first = snap_both(0)
    if floor:
        first["floor"] = floor.snapshot(data)
    # extra timing runs of the first snapshot into throwaway stores
    extra = {"cairn": [], "restic": []}
    for i in range(args.runs - 1):
        for tool in (Cairn(args.cairn, os.path.join(scratch, "c")),
                     Restic(args.restic, os.path.join(scratch, "r"), os.path.join(scratch, "rc"), data)):
            tool.init()
            warm(data)
            r = tool.snapshot(data)
            extra[tool.name].append(dict(wall_s=r["wall_s"], cpu_s=r["cpu_s"], maxrss_kib=r["maxrss_kib"], load1=r["load1"]))
        shutil.rmtree(scratch)
        os.makedirs(scratch)
    first["extra_runs"] = extra
    rows.append(first)
    log(f"h00: cairn {first['cairn']['wall_s']:.2f}s restic {first['restic']['wall_s']:.2f}s")

    # 3. hours
    for h in range(1, args.hours + 1):
        subprocess.run([sys.executable, args.gen, "age", data, "--hours", "1", "--seed", str(args.seed)],
                       check=True, stdout=subprocess.DEVNULL)
        keep_copy(h)
        row = snap_both(h)
        if floor:
            row["floor"] = floor.snapshot(data)
        rows.append(row)
        log(f"h{h:02d}: cairn {row['cairn']['wall_s']:.2f}s +{fmt_b(row['cairn']['growth'])}, "
            f"restic {row['restic']['wall_s']:.2f}s +{fmt_b(row['restic']['growth'])}, "
            f"floor {fmt_b(row.get('floor', {}).get('floor'))}")
    result["rows"] = rows

    # 4. unchanged snapshot
    unchanged = snap_both(args.hours)
    result["unchanged"] = unchanged
    log(f"unchanged: cairn {unchanged['cairn']['wall_s']:.3f}s +{unchanged['cairn']['growth']} B, "
        f"restic {unchanged['restic']['wall_s']:.3f}s +{unchanged['restic']['growth']} B")

    # 5. restores
    if not args.no_restore:
        last = rows[-1]
        rest = {}
        # cairn fsyncs every restored file and restic does not: cairn is
        # also timed with --no-sync, the like-for-like comparison.
        for name, tool, sync in [("cairn", cairn, True), ("restic", restic, True), ("cairn-nosync", cairn, False)]:
            runs = []
            ok = True
            for i in range(args.runs):
                target = os.path.join(restores, f"{name}-last")
                shutil.rmtree(target, ignore_errors=True)
                warm(tool.store if tool is cairn else tool.repo)
                r = tool.restore(last[tool.name]["id"], target) if sync else tool.restore(
                    last[tool.name]["id"], target, sync=False)
                runs.append(dict(wall_s=r["wall_s"], cpu_s=r["cpu_s"], maxrss_kib=r["maxrss_kib"], load1=r["load1"]))
                same, why = same_tree(os.path.join(copies, f"h{args.hours:02d}"), tool.restored_root(target))
                ok = ok and same
                if not same:
                    log(f"RESTORE MISMATCH {name} last snapshot:\n{why}")
                shutil.rmtree(target)
            rest[name] = dict(runs=runs, wall_s=median([x["wall_s"] for x in runs]),
                                   cpu_s=median([x["cpu_s"] for x in runs]),
                                   maxrss_kib=max(x["maxrss_kib"] for x in runs), identical=ok)
        # every cairn snapshot, compared to its hour's copy
        verify = []
        for row in rows + [dict(hour=args.hours, cairn=unchanged["cairn"], unchanged=True)]:
            target = os.path.join(restores, "cairn-verify")
            shutil.rmtree(target, ignore_errors=True)
            try:
                r = cairn.restore(row["cairn"]["id"], target)
                same, why = same_tree(os.path.join(copies, f"h{row['hour']:02d}"), target)
                err = None if same else why
            except RuntimeError as e:
                r, same, err = dict(wall_s=None, maxrss_kib=None), False, str(e)[-2000:]
            verify.append(dict(hour=row["hour"], id=row["cairn"]["id"], unchanged=row.get("unchanged", False),
                               identical=same, error=err, wall_s=r["wall_s"], maxrss_kib=r["maxrss_kib"]))
            if not same:
                log(f"CAIRN RESTORE MISMATCH hour {row['hour']} ({row['cairn']['id']}):\n{err}")
            shutil.rmtree(target, ignore_errors=True)
        result["restore"] = rest
        result["verify"] = verify
    result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    summarize(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, sort_keys=True)
    if not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    bad = [v for v in result.get("verify", []) if not v["identical"]]
    bad += [k for k, v in result.get("restore", {}).items() if not v["identical"]]
    return 1 if bad else 0


def summarize(res):
    rows = res["rows"]
    p = print
    p(f"## cairn vs restic: {res['scale']} data path, {res['hours']} hours, seed {res['seed']}\n")
    p(f"cairn: {res['cairn_version']} ({res.get('git', '?')}); {res['restic_version']}; "
      f"data path {fmt_b(res['data_bytes_h0'])} at hour 0, {fmt_b(rows[-1]['data_bytes'])} at hour {rows[-1]['hour']}\n")
    p("| hour | data | cairn s (CPU s) | restic s (CPU s) | time ratio | cairn growth | restic growth | floor | cairn/floor | cairn/restic | cairn RSS | restic RSS |")
    p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        c, s, fl = r["cairn"], r["restic"], r.get("floor", {}).get("floor")
        p(f"| {r['hour']} | {fmt_b(r['data_bytes'])} | {c['wall_s']:.2f} ({c['cpu_s']:.2f}) | {s['wall_s']:.2f} ({s['cpu_s']:.2f}) "
          f"| {fr(ratio(c['wall_s'], s['wall_s']))} "
          f"| {fmt_b(c['growth'])} | {fmt_b(s['growth'])} | {fmt_b(fl)} | {fr(ratio(c['growth'], fl))} "
          f"| {fr(ratio(c['growth'], s['growth']))} | {c['maxrss_kib'] / 1024:.0f} MiB | {s['maxrss_kib'] / 1024:.0f} MiB |")
    first = rows[0]
    fc = median([first["cairn"]["wall_s"]] + [x["wall_s"] for x in first["extra_runs"]["cairn"]])
    fs = median([first["restic"]["wall_s"]] + [x["wall_s"] for x in first["extra_runs"]["restic"]])
    inc = rows[1:]
    ic = median([r["cairn"]["wall_s"] for r in inc])
    is_ = median([r["restic"]["wall_s"] for r in inc])
    inc_ratio = median([ratio(r["cairn"]["wall_s"], r["restic"]["wall_s"]) for r in inc])
    floor_ratio = median([ratio(r["cairn"]["growth"], r.get("floor", {}).get("floor")) for r in inc])
    size_ratio = median([ratio(r["cairn"]["growth"], r["restic"]["growth"]) for r in inc])
    sum_c = sum(r["cairn"]["growth"] for r in inc)
    sum_r = sum(r["restic"]["growth"] for r in inc)
    sum_f = sum(r.get("floor", {}).get("floor") or 0 for r in inc)
    fcc = median([first["cairn"]["cpu_s"]] + [x["cpu_s"] for x in first["extra_runs"]["cairn"]])
    fsc = median([first["restic"]["cpu_s"]] + [x["cpu_s"] for x in first["extra_runs"]["restic"]])
    inc_cpu = median([ratio(r["cairn"]["cpu_s"], r["restic"]["cpu_s"]) for r in inc])
    un = res["unchanged"]
    rest = res.get("restore", {})
    rc = rest.get("cairn", {}).get("wall_s")
    rr = rest.get("restic", {}).get("wall_s")

    def verdict(x, target):
        return "-" if x is None else ("met" if x <= target else "MISSED")

    rn = rest.get("cairn-nosync", {}).get("wall_s")
    rnc = rest.get("cairn-nosync", {}).get("cpu_s")
    rcc = rest.get("cairn", {}).get("cpu_s")
    rrc = rest.get("restic", {}).get("cpu_s")
    summary = [
        ("first snapshot wall time (median of runs)", f"{fr(fc)} s", f"{fr(fs)} s", ratio(fc, fs), ratio(fcc, fsc),
         1 / 3, "≤ 0.33"),
        ("incremental snapshot wall time (median over hours)", f"{fr(ic)} s", f"{fr(is_)} s", inc_ratio, inc_cpu,
         1 / 4, "≤ 0.25"),
        ("verified restore of the last snapshot (median)", f"{fr(rc)} s", f"{fr(rr)} s", ratio(rc, rr),
         ratio(rcc, rrc), 1 / 2, "≤ 0.50"),
        ("same, cairn --no-sync (restic does not fsync either)", f"{fr(rn)} s", f"{fr(rr)} s", ratio(rn, rr),
         ratio(rnc, rrc), 1 / 2, "≤ 0.50"),
        ("incremental growth vs restic (median over hours)", fmt_b(median([r['cairn']['growth'] for r in inc])),
         fmt_b(median([r['restic']['growth'] for r in inc])), size_ratio, None, 0.5, "≤ 0.50"),
        ("incremental growth vs floor (median over hours)", fmt_b(median([r['cairn']['growth'] for r in inc])),
         f"floor {fmt_b(median([r.get('floor', {}).get('floor') for r in inc]))}", floor_ratio, None, 1.5, "≤ 1.50"),
    ]
    p("\n| measure | cairn | restic (or floor) | ratio | CPU-time ratio | target | verdict |")
    p("|---|---:|---:|---:|---:|---|---|")
    for name, a, b, x, xc, t, ts in summary:
        p(f"| {name} | {a} | {b} | {fr(x)} | {fr(xc)} | {ts} | {verdict(x, t)} |")
    p(f"\nsums over hours 1-{len(inc)}: cairn {fmt_b(sum_c)}, restic {fmt_b(sum_r)}, floor {fmt_b(sum_f)} "
      f"(cairn/floor {fr(ratio(sum_c, sum_f))}, cairn/restic {fr(ratio(sum_c, sum_r))})")
    p(f"first snapshot store size: cairn {fmt_b(first['cairn']['store_bytes'])} (+ index {fmt_b(first['cairn']['index_bytes'])}), "
      f"restic {fmt_b(first['restic']['store_bytes'])} (+ cache {fmt_b(first['restic']['cache_bytes'])}), "
      f"floor of hour 0 {fmt_b(first.get('floor', {}).get('floor'))}")
    p(f"unchanged snapshot: cairn {un['cairn']['wall_s']:.3f} s, +{un['cairn']['growth']} B; "
      f"restic {un['restic']['wall_s']:.3f} s, +{un['restic']['growth']} B")
    allc = [r["cairn"]["maxrss_kib"] for r in rows] + [x["maxrss_kib"] for x in first["extra_runs"]["cairn"]]
    alls = [r["restic"]["maxrss_kib"] for r in rows] + [x["maxrss_kib"] for x in first["extra_runs"]["restic"]]
    p(f"peak RSS, snapshots: cairn {max(allc) / 1024:.0f} MiB, restic {max(alls) / 1024:.0f} MiB; restores: "
      f"cairn {fr((rest.get('cairn', {}).get('maxrss_kib') or 0) / 1024, 0)} MiB, "
      f"restic {fr((rest.get('restic', {}).get('maxrss_kib') or 0) / 1024, 0)} MiB")
    if "verify" in res:
        ok = sum(1 for v in res["verify"] if v["identical"])
        p(f"restore verification: {ok}/{len(res['verify'])} cairn snapshots byte-identical to their hour's copy; "
          f"last snapshot: cairn {'identical' if rest['cairn']['identical'] else 'DIFFERENT'}, "
          f"restic {'identical' if rest['restic']['identical'] else 'DIFFERENT'}")
    loads = [r[t]["load1"] for r in rows for t in ("cairn", "restic")]
    p(f"load average (1 min) before timed commands: min {min(loads):.2f}, median {median(loads):.2f}, max {max(loads):.2f}")


if __name__ == "__main__":
    sys.exit(main())
