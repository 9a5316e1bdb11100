#!/usr/bin/env bash
# The 10 GB measurement (BENCHMARKS.md, "10 GB (synthetic)"): peak RSS and
# time of a first snapshot, unchanged snapshots, `ls latest`, a snapshot
# after small writes into four databases, restores with and without fsync
# (each diffed against the source), and restic's first and unchanged
# snapshots of the same data. Prints /usr/bin/time lines.
#
#   bash benches/large.sh CAIRN_BINARY WORK_DIR [TARGET_BYTES]
#
# WORK_DIR keeps the generated data between runs (large-src: the large
# generated data path; synth: the 10 GB path synth_large.py builds from it).
set -euo pipefail
CAIRN=$(realpath "$1")
WORK=$2
TARGET=${3:-10000000000}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$WORK"
cd "$WORK"
T() { /usr/bin/time -f "%e s wall %U u %S s %M KiB" "$@"; }

[ -d large-src ] || python3 "$HERE/../tests/hitkeep_gen.py" create large-src --scale large --seed 1 >/dev/null
[ -d synth ] || python3 "$HERE/synth_large.py" large-src synth --target-bytes "$TARGET"
echo "# cairn $("$CAIRN" --version), $(date -u +%FT%TZ), $(du -sb synth | cut -f1) bytes in synth"
rm -rf store restored restic-repo restic-cache
"$CAIRN" --store store init >/dev/null
find synth -type f -exec cat {} + >/dev/null # the same warm page cache for both tools
echo "first snapshot (fresh store):"
T "$CAIRN" --store store --quiet snapshot --data-path synth
du -sb store/packs
for i in 1 2 3; do
    echo "unchanged snapshot $i:"
    T "$CAIRN" --store store --json snapshot --data-path synth \
        | python3 -c 'import json,sys; j=json.load(sys.stdin); print("bytes_read", j["bytes_read"], "store_growth", j["store_growth"])'
done
echo "ls latest:"
T "$CAIRN" --store store ls latest >/dev/null
python3 - <<'EOF'
import glob, random
rng = random.Random(7)
for db in sorted(glob.glob("synth/tenants/*/hitkeep.db"))[:4]:
    with open(db, "r+b") as f:
        size = f.seek(0, 2)
        for _ in range(64):
            f.seek(rng.randrange(12288, size - 256))
            f.write(rng.randbytes(256))
EOF
echo "after 64 writes of 256 bytes into each of 4 databases:"
T "$CAIRN" --store store --json snapshot --data-path synth \
    | python3 -c 'import json,sys; j=json.load(sys.stdin); print("bytes_read", j["bytes_read"], "store_growth", j["store_growth"])'
echo "restore --no-sync:"
T "$CAIRN" --store store --quiet restore --snapshot latest --target restored --no-sync
diff -rq synth restored && echo "restored tree identical"
rm -rf restored
sync
echo "restore (fsync):"
T "$CAIRN" --store store --quiet restore --snapshot latest --target restored
diff -rq synth restored && echo "restored tree identical"
rm -rf restored
export RESTIC_PASSWORD=cairn-bench
restic init -q --repo restic-repo --cache-dir restic-cache >/dev/null
echo "restic first snapshot ($(restic version | cut -d' ' -f2)):"
T restic -q --repo restic-repo --cache-dir restic-cache backup synth >/dev/null
echo "restic unchanged snapshot:"
T restic -q --repo restic-repo --cache-dir restic-cache backup synth >/dev/null
du -sb restic-repo
rm -rf store restic-repo restic-cache
