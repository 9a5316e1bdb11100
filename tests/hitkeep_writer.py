#!/usr/bin/env python3
"""A live writer for cairn's live-capture test (real DuckDB engine).

Lays out a HitKeep-shaped data path and writes to every database in it
continuously, the way a running HitKeep does, until stdin is closed:

    {data}/hitkeep.db                        control plane
    {data}/tenants/{uuid}/hitkeep.db         one per tenant (--tenants, default 3)
    {data}/spam-filter.json, {data}/archive/ (static)

Every database has the tables

    log(id BIGINT, payload VARCHAR)          append-only; ids 1, 2, 3 ... in order
    kv(k INT PRIMARY KEY, v BIGINT)          upserted; v = the last id of the transaction
    trash(id BIGINT)                         every id is inserted, then ids <= last-500 deleted

and every transaction (one per loop, per database, on its own thread)
appends a batch of the next ids to `log` (payload derived from the id, see
`payload_sql`), upserts one `kv` row with v = the batch's last id, inserts
the batch into `trash` and deletes from `trash` what is 500 or more ids
older than the last id. `CHECKPOINT` runs every 50-200 ms (random, per
database; --min-cp-ms/--max-cp-ms), so the database file alone is always
the state of some committed prefix:

    log ids are exactly 1..count, every payload matches its id,
    max(kv.v) == count, trash ids are exactly (count-500, count].

`hitkeep_verify.py` checks exactly that.

Output (stdout, one JSON object per line):
    {"ready": true, "dbs": [rel, ...]}            once every database exists and is checkpointed
    {"stopped": true, "dbs": {rel: {"count": n, "transactions": t, "checkpoints": c}}}
                                                   after stdin closed and every writer finished

Standard library + duckdb only.
"""

import argparse
import json
import os
import random
import sys
import threading
import time
import uuid

import duckdb

TRASH_KEEP = 500
KV_KEYS = 16

SCHEMA = """
CREATE TABLE IF NOT EXISTS log(id BIGINT, payload VARCHAR);
CREATE TABLE IF NOT EXISTS kv(k INTEGER PRIMARY KEY, v BIGINT);
CREATE TABLE IF NOT EXISTS trash(id BIGINT);
"""


def payload_sql(col):
    """The payload of id `col`, as SQL (hitkeep_verify.py uses the same)."""
    return f"repeat(md5({col}::VARCHAR), 1 + ({col} % 7)::INTEGER)"


def tenant_ids(n, seed):
    rnd = random.Random(seed)
    return [str(uuid.UUID(int=rnd.getrandbits(128), version=4)) for _ in range(n)]


class Writer(threading.Thread):
    def __init__(self, path, rel, seed, args, stop):
        super().__init__(daemon=True)
        self.path, self.rel = path, rel
        self.rnd = random.Random(seed)
        self.args, self.stop = args, stop
        self.count = 0
        self.transactions = 0
        self.checkpoints = 0
        self.error = None
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # Checkpoints are issued explicitly (like HitKeep's ticker), never
        # by the WAL size.
        self.con = duckdb.connect(path, config={"threads": "1", "wal_autocheckpoint": "1GB"})
        self.con.execute(SCHEMA)
        self.con.execute("CHECKPOINT")

    def next_checkpoint(self):
        a = self.args
        return time.monotonic() + self.rnd.uniform(a.min_cp_ms, a.max_cp_ms) / 1000.0

    def run(self):
        try:
            self.loop()
        except Exception as e:  # reported in the summary, and by the exit code
            self.error = f"{type(e).__name__}: {e}"

    def loop(self):
        con = self.con
        cp_at = self.next_checkpoint()
        while not self.stop.is_set():
            first = self.count + 1
            last = self.count + self.rnd.randint(1, self.args.max_batch)
            con.execute("BEGIN TRANSACTION")
            con.execute(
                f"INSERT INTO log SELECT i, {payload_sql('i')} FROM range({first}, {last + 1}) t(i)"
            )
            con.execute(
                "INSERT INTO kv VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                [self.transactions % KV_KEYS, last],
            )
            con.execute(f"INSERT INTO trash SELECT i FROM range({first}, {last + 1}) t(i)")
            con.execute("DELETE FROM trash WHERE id <= ?", [last - TRASH_KEEP])
            con.execute("COMMIT")
            self.count = last
            self.transactions += 1
            if time.monotonic() >= cp_at:
                con.execute("CHECKPOINT")
                self.checkpoints += 1
                cp_at = self.next_checkpoint()
            if self.args.pause_ms:
                time.sleep(self.rnd.uniform(0, self.args.pause_ms) / 1000.0)
        con.execute("CHECKPOINT")
        self.checkpoints += 1
        con.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir")
    ap.add_argument("--tenants", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--min-cp-ms", type=float, default=50)
    ap.add_argument("--max-cp-ms", type=float, default=200)
    ap.add_argument("--max-batch", type=int, default=48, help="ids appended per transaction: 1..N")
    ap.add_argument("--pause-ms", type=float, default=2, help="random pause between transactions: 0..N ms")
    args = ap.parse_args(argv)

    data = os.path.abspath(args.data_dir)
    if os.path.exists(os.path.join(data, "hitkeep.db")):
        sys.exit(f"refusing: {data}/hitkeep.db exists")
    os.makedirs(os.path.join(data, "archive"), exist_ok=True)
    with open(os.path.join(data, "spam-filter.json"), "w") as f:
        json.dump({"blocked_referrers": ["spam.example"], "version": 1}, f)
    rels = ["hitkeep.db"] + [f"tenants/{t}/hitkeep.db" for t in tenant_ids(args.tenants, args.seed)]
    stop = threading.Event()
    writers = [Writer(os.path.join(data, rel), rel, args.seed * 1000 + i, args, stop) for i, rel in enumerate(rels)]
    for w in writers:
        w.start()
    print(json.dumps({"ready": True, "dbs": rels}), flush=True)
    # Run until stdin is closed (or a writer fails).
    reader = threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True)
    reader.start()
    while not stop.is_set():
        if any(not w.is_alive() for w in writers):
            stop.set()
        stop.wait(0.05)
    for w in writers:
        w.join()
    summary = {w.rel: dict(count=w.count, transactions=w.transactions, checkpoints=w.checkpoints, error=w.error)
               for w in writers}
    print(json.dumps({"stopped": True, "dbs": summary}), flush=True)
    sys.exit(1 if any(w.error for w in writers) else 0)


if __name__ == "__main__":
    main()
