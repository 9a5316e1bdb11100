#!/usr/bin/env bash
# Measures store growth per simulated hour for several DuckDB sub-block
# chunk sizes on the same generated data path (the choice recorded in
# ARCHITECTURE.md). Usage: scripts/measure-duckdb-chunk.sh [scale] [hours]
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${1:-small}
HOURS=${2:-4}
CAIRN=$PWD/target/release/cairn
WORK=$(mktemp -d -t cairn-chunk-size.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
SIZES="${SIZES:-4 8 16 64}"
python3 tests/hitkeep_gen.py create "$WORK/data" --scale "$SCALE" --seed 1 >/dev/null
for k in $SIZES; do "$CAIRN" -q --store "$WORK/s$k" init --duckdb-chunk-kib "$k"; done
printf "%-6s" hour; for k in $SIZES; do printf " %14s" "${k}KiB-growth"; done; printf " %14s\n" "meta(4KiB)"
for h in $(seq 0 "$HOURS"); do
  [ "$h" -gt 0 ] && python3 tests/hitkeep_gen.py age "$WORK/data" --hours 1 --seed $((100 + h)) >/dev/null
  printf "%-6s" "$h"
  for k in $SIZES; do
    out=$("$CAIRN" --store "$WORK/s$k" --json snapshot --data-path "$WORK/data")
    g=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["store_growth"])')
    [ "$k" = 4 ] && meta=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["new_meta_bytes"])')
    printf " %14s" "$g"
  done
  printf " %14s\n" "$meta"
done
