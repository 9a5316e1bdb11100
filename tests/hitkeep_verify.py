#!/usr/bin/env python3
"""Checks restored copies of a `hitkeep_writer.py` data path (real DuckDB).

    hitkeep_verify.py [--allow-wal] DIR [DIR ...]

For every DuckDB database under each DIR (`hitkeep.db` files), with no WAL
beside it (a `.wal` is an error: the database file alone must be the
state; with --allow-wal a WAL beside it is replayed by DuckDB on open),
opened read-only, checks the prefix properties the writer guarantees at
every checkpoint (and, replaying a WAL, at every commit):

    * `log` ids are exactly 1..count (no gap, no duplicate), and every
      payload is the one derived from its id;
    * max(kv.v) == count (the last transaction's upsert is there iff its
      append is), no kv value is above count, keys are unique;
    * `trash` ids are exactly (count-500, count].

Prints one JSON object: {DIR: {rel: {"count": n, "errors": [...]}}}.
A database that fails to open is reported with count null and the error.
Exit code 0 whether or not properties hold (the caller decides); 2 on
usage errors.

Standard library + duckdb only.
"""

import json
import os
import sys

import duckdb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hitkeep_writer import TRASH_KEEP, payload_sql  # noqa: E402


def databases(root):
    out = []
    for dp, dns, fns in os.walk(root):
        dns.sort()
        for fn in sorted(fns):
            if fn == "hitkeep.db":
                out.append(os.path.relpath(os.path.join(dp, fn), root))
    return out


def one(con):
    errors = []
    q = lambda sql: con.execute(sql).fetchone()  # noqa: E731
    count, lo, hi, distinct = q("SELECT count(*), min(id), max(id), count(DISTINCT id) FROM log")
    if count and (lo != 1 or hi != count or distinct != count):
        errors.append(f"log ids not exactly 1..{count}: min {lo}, max {hi}, distinct {distinct}")
    (bad,) = q(f"SELECT count(*) FROM log WHERE payload IS DISTINCT FROM {payload_sql('id')}")
    if bad:
        errors.append(f"{bad} log payloads do not match their ids")
    kmax, kn, kdistinct = q("SELECT coalesce(max(v), 0), count(*), count(DISTINCT k) FROM kv")
    if kmax != count:
        errors.append(f"max(kv.v) = {kmax} but log has {count} rows")
    if kn != kdistinct:
        errors.append(f"kv keys not unique: {kn} rows, {kdistinct} keys")
    want_lo = max(1, count - TRASH_KEEP + 1)
    tn, tlo, thi, tdistinct = q("SELECT count(*), min(id), max(id), count(DISTINCT id) FROM trash")
    want_n = count - want_lo + 1 if count else 0
    if tn != want_n or tdistinct != tn or (count and (tlo != want_lo or thi != count)):
        errors.append(
            f"trash holds {tn} rows ({tdistinct} distinct) ids {tlo}..{thi}, "
            f"want exactly {want_lo}..{count} ({want_n} rows)"
        )
    return count, errors


def check(path, allow_wal=False):
    if os.path.exists(path + ".wal") and not allow_wal:
        return dict(count=None, errors=[f"{path}.wal exists: the database must be checked without a WAL"])
    try:
        con = duckdb.connect(path, read_only=True)
    except Exception as e:
        return dict(count=None, errors=[f"does not open: {type(e).__name__}: {e}"])
    try:
        count, errors = one(con)
        return dict(count=count, errors=errors)
    except Exception as e:
        return dict(count=None, errors=[f"query failed: {type(e).__name__}: {e}"])
    finally:
        con.close()


def main(argv):
    allow_wal = "--allow-wal" in argv
    argv = [a for a in argv if a != "--allow-wal"]
    if not argv:
        sys.stderr.write(__doc__)
        return 2
    out = {}
    for root in argv:
        out[root] = {rel: check(os.path.join(root, rel), allow_wal) for rel in databases(root)}
    print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
