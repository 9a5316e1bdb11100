#!/usr/bin/env python3
"""HitKeep's built-in backups kept by cairn and by restic, run by run.

    python3 benches/import.py [--hours 24] [--seed 7] [--scale tiny]
                              [--work ./bench-work/import] [--runs 3]
                              [--cairn target/release/cairn] [--json OUT]

What it does (all in --work, emptied first):

1. `tests/hitkeep_gen.py create data --scale S --seed N`, then
   `tests/hitkeep_backup.py series data backup --hours H`: H hourly
   exports made by DuckDB's `EXPORT DATABASE ... (FORMAT PARQUET)`, as
   HitKeep makes them.
2. cairn: `import-hitkeep-backups --from backup` into a new store (one
   snapshot per run). restic: one `backup` per run of that run's export
   directories (`shared/{ts}` and every `tenants/*/{ts}`), oldest first,
   so each tool holds the same H snapshots. Wall time of all of it, and
   the store's bytes (cairn without its `index/` cache; restic's cache is
   outside its repository).
3. Restore of the newest run, verified: cairn `restore
   --as-hitkeep-backup` (fsyncs), restic `restore --verify` of its last
   snapshot (no fsync).

Steps 2 and 3 are repeated `--runs` times into fresh stores, the tools
interleaved, and the medians reported. The page cache is warm (the
backup directory is read before each timed command).

Needs: cairn built (`cargo build --release -p cairn-cli`), restic, Python
with `duckdb`.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GEN = os.path.join(ROOT, "tests", "hitkeep_gen.py")
BACKUP = os.path.join(ROOT, "tests", "hitkeep_backup.py")


def run(cmd, env=None):
    t = time.monotonic()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr.strip()}")
    return time.monotonic() - t


def tree_bytes(root, skip_top=()):
    n = 0
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == root:
            dirnames[:] = [d for d in dirnames if d not in skip_top]
        n += sum(os.lstat(os.path.join(dirpath, f)).st_size for f in filenames)
    return n


def warm(path):
    for dirpath, _, filenames in os.walk(path):
        for f in filenames:
            with open(os.path.join(dirpath, f), "rb") as fh:
                while fh.read(1 << 20):
                    pass


def runs_of(backup):
    return sorted(os.listdir(os.path.join(backup, "shared")))


def run_dirs(backup, ts):
    dirs = [os.path.join(backup, "shared", ts)]
    tenants = os.path.join(backup, "tenants")
    for t in sorted(os.listdir(tenants)) if os.path.isdir(tenants) else []:
        d = os.path.join(tenants, t, ts)
        if os.path.isdir(d):
            dirs.append(d)
    return dirs


def cairn_round(cairn, backup, work, last):
    store = os.path.join(work, "cairn-store")
    out = os.path.join(work, "cairn-out")
    for p in (store, out):
        shutil.rmtree(p, ignore_errors=True)
    run([cairn, "--store", store, "-q", "init"])
    warm(backup)
    t_import = run([cairn, "--store", store, "-q", "import-hitkeep-backups", "--from", backup, "--min-age", "0"])
    size = tree_bytes(store, skip_top=("index",))
    warm(store)
    t_restore = run([cairn, "--store", store, "-q", "restore", "--as-hitkeep-backup", "--snapshot", last,
                     "--target", out])
    return t_import, size, t_restore


def restic_round(restic, backup, work, runs):
    repo = os.path.join(work, "restic-repo")
    cache = os.path.join(work, "restic-cache")
    out = os.path.join(work, "restic-out")
    for p in (repo, cache, out):
        shutil.rmtree(p, ignore_errors=True)
    env = dict(os.environ, RESTIC_PASSWORD="cairn-bench")
    base = [restic, "--repo", repo, "--cache-dir", cache, "-q"]
    run(base + ["init"], env=env)
    warm(backup)
    t_import = sum(run(base + ["backup"] + run_dirs(backup, ts), env=env) for ts in runs)
    size = tree_bytes(repo)
    warm(repo)
    t_restore = run(base + ["restore", "latest", "--target", out, "--verify"], env=env)
    return t_import, size, t_restore


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--scale", default="tiny")
    ap.add_argument("--work", default=os.path.join(ROOT, "bench-work", "import"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cairn", default=os.path.join(ROOT, "target", "release", "cairn"))
    ap.add_argument("--restic", default=shutil.which("restic") or "restic")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    data = os.path.join(a.work, "data")
    backup = os.path.join(a.work, "backup")
    run([sys.executable, GEN, "create", data, "--scale", a.scale, "--seed", str(a.seed)])
    run([sys.executable, BACKUP, "series", data, backup, "--hours", str(a.hours)])
    runs = runs_of(backup)
    export_bytes = tree_bytes(backup)

    rows = {"cairn": [], "restic": []}
    for _ in range(a.runs):
        rows["cairn"].append(cairn_round(a.cairn, backup, a.work, runs[-1]))
        rows["restic"].append(restic_round(a.restic, backup, a.work, runs))

    def med(tool, i):
        return statistics.median(r[i] for r in rows[tool])

    result = {
        "runs": len(runs),
        "export_bytes": export_bytes,
        "rounds": a.runs,
        "raw": rows,
    }
    print(f"{len(runs)} hourly exports, {export_bytes:,} bytes of files; medians of {a.runs} rounds")
    print("| | cairn | restic | cairn / restic |")
    print("|---|---|---|---|")
    for label, i, fmt in (("keep every run (s)", 0, "{:.2f}"), ("store bytes", 1, "{:,.0f}"),
                          ("restore newest run (s)", 2, "{:.2f}")):
        c, r = med("cairn", i), med("restic", i)
        result[label] = {"cairn": c, "restic": r}
        print(f"| {label} | {fmt.format(c)} | {fmt.format(r)} | {c / r:.3f} |")
    for tool in ("cairn", "restic"):
        print(f"{tool}: store / exports = {med(tool, 1) / export_bytes:.3f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
