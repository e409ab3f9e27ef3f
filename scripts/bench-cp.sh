#!/usr/bin/env bash
# How close `cp` into the mount comes to writing the spool disk directly, and how fast uploads
# drain to the emulator. Uses hyperfine (installed with apt if missing).
# Usage: scripts/bench-cp.sh [SIZE_MIB]
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-512}
bash scripts/install-deps.sh
command -v hyperfine >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq hyperfine >/dev/null; }
cargo build --release
bin=$PWD/target/release/shareuplift
source scripts/lib-emulator.sh
start_emulator '{}'
mount_emulator ""
head -c "$((size * 1024 * 1024))" /dev/urandom > "$work/src.bin"
mkdir -p "$work/direct"
echo "== cp of ${size} MiB: spool disk directly vs. into the mount (close returns before upload)"
# Each run starts with the previous run's upload drained, so cp does not compete with it.
drained="while grep -q '\"state\": *\"\\(queued\\|uploading\\|retrying\\)\"' $mnt/.status.json; do sleep 0.2; done"
hyperfine --warmup 1 --runs 5 \
  --prepare "rm -f $work/direct/x.bin; sync" "cp $work/src.bin $work/direct/x.bin" \
  --prepare "$drained; sync" "cp $work/src.bin $mnt/x.bin"
wait_all_done
echo "== upload drain rate: ${size} MiB file, from close to committed"
t0=$(date +%s%N)
cp "$work/src.bin" "$mnt/y.bin"
wait_all_done
t1=$(date +%s%N)
ms=$(( (t1 - t0) / 1000000 ))
echo "copied + uploaded ${size} MiB in ${ms} ms: $(( size * 1000 / (ms > 0 ? ms : 1) )) MiB/s"
stop_mount
