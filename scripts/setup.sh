#!/usr/bin/env bash
# Installs what cairn's demo and tests need beyond the Rust toolchain:
# Python's duckdb package (the real DuckDB engine, for generated data).
# Idempotent; safe to run on every CI run.
set -euo pipefail

PY=${PYTHON:-python3}
need_pip=0
"$PY" -c 'import duckdb, sys; sys.exit(0 if duckdb.__version__ == "2.0.0" else 1)' 2>/dev/null || need_pip=1
if [ "$need_pip" = 1 ]; then
    if ! "$PY" -m pip --version >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq python3-pip >/dev/null
    fi
    "$PY" -m pip install --quiet --disable-pip-version-check duckdb==2.0.0
fi
"$PY" -c 'import duckdb; print("setup: python duckdb", duckdb.__version__)'
