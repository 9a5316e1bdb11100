#!/usr/bin/env python3
"""HitKeep's built-in backups, made the way HitKeep makes them.

Every HITKEEP_BACKUP_INTERVAL HitKeep runs CHECKPOINT and then
`EXPORT DATABASE 'dir' (FORMAT PARQUET)` for each database into

    {backup}/shared/{ts}/                 the control-plane database
    {backup}/tenants/{tenant-uuid}/{ts}/  each tenant database

with {ts} the UTC time as 2026-03-08T120000Z. This script does the same
with the real DuckDB engine on a data path made by hitkeep_gen.py, using the
generator's simulated clock for {ts}.

Commands:
    export DATA_DIR BACKUP_DIR             one backup run, now (simulated clock)
    series DATA_DIR BACKUP_DIR --hours N   N times: age one hour, then export

Standard library + duckdb only.
"""

import argparse
import datetime as dt
import json
import os
import subprocess
import sys

import duckdb

GEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hitkeep_gen.py")


def clock(db):
    con = duckdb.connect(db, read_only=True)
    try:
        (value,) = con.execute("SELECT value FROM _gen_state WHERE key = 'clock'").fetchone()
    finally:
        con.close()
    return dt.datetime.fromisoformat(json.loads(value))


def export(data, backup):
    data = os.path.abspath(data)
    db = os.path.join(data, "hitkeep.db")
    ts = clock(db).strftime("%Y-%m-%dT%H%M%SZ")
    dbs = [(db, os.path.join(backup, "shared", ts))]
    tenants = os.path.join(data, "tenants")
    for t in sorted(os.listdir(tenants)) if os.path.isdir(tenants) else []:
        p = os.path.join(tenants, t, "hitkeep.db")
        if os.path.exists(p):
            dbs.append((p, os.path.join(backup, "tenants", t, ts)))
    for src, dest in dbs:
        if os.path.exists(dest):
            sys.exit(f"refusing to export: {dest} exists")
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        con = duckdb.connect(src, config={"threads": "1"})
        try:
            con.execute("CHECKPOINT")
            con.execute(f"EXPORT DATABASE '{dest}' (FORMAT PARQUET)")
        finally:
            con.close()
    return ts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("data_dir")
    e.add_argument("backup_dir")
    s = sub.add_parser("series")
    s.add_argument("data_dir")
    s.add_argument("backup_dir")
    s.add_argument("--hours", type=int, required=True)
    a = ap.parse_args(argv)
    if a.cmd == "export":
        print(json.dumps({"ts": [export(a.data_dir, a.backup_dir)]}))
        return
    out = []
    for _ in range(a.hours):
        subprocess.run([sys.executable, GEN, "age", a.data_dir, "--hours", "1"], check=True,
                       stdout=subprocess.DEVNULL)
        out.append(export(a.data_dir, a.backup_dir))
    print(json.dumps({"ts": out}))


if __name__ == "__main__":
    main()
