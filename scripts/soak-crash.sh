#!/usr/bin/env bash
# Crash soak (issue 12), RUNS seeded runs of tests/crash_soak.rs: rsync a tree (one big file,
# 200 small ones in 4 folders) into the mount, kill -9 it at a seeded random moment, remount,
# rsync again, SOAK_ROUNDS times; then check everything arrived once, identical, nothing failed,
# no temp names in SharePoint, all sessions closed. Usage: scripts/soak-crash.sh [RUNS] [FIRST_SEED]
# Env: SOAK_BIG_MIB (default 300 here), SOAK_ROUNDS (10), SOAK_BW (bytes/s, 60000000 here).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
seed=${2:-$(date +%s)}
export SOAK_BIG_MIB=${SOAK_BIG_MIB:-300} SOAK_ROUNDS=${SOAK_ROUNDS:-10} SOAK_BW=${SOAK_BW:-60000000}
cargo test --test crash_soak --no-run -q
pass=0
for ((i = 0; i < runs; i++)); do
  s=$((seed + i))
  if SOAK_SEED=$s cargo test -q --test crash_soak -- --nocapture 2>&1 | grep -E "crash soak|received|left in"; then
    echo "run $((i + 1))/$runs SOAK_SEED=$s: ok"; pass=$((pass + 1))
  else
    echo "run $((i + 1))/$runs SOAK_SEED=$s: FAILED (replay: SOAK_SEED=$s cargo test --test crash_soak -- --nocapture)"
  fi
done
echo "$pass/$runs runs passed"
[ "$pass" -eq "$runs" ]
