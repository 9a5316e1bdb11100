#!/usr/bin/env bash
# The test command: installs test dependencies, then runs every test of
# the workspace (unit, property, integration, fuzz-corpus replays).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --workspace --locked
