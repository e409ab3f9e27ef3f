#!/usr/bin/env bash
# Peak RSS of the mount process while it uploads files of growing size (default 256 MiB and
# 1 GiB) with 10 MiB chunks through the emulator. Memory per upload should be about one chunk
# and must not grow with file size or fragment size (fragments stream from the spool file).
# Then (FOUR_MIB, default 1024; 0 skips) four files of FOUR_MIB uploaded at once with the
# largest fragments (chunk_size = 62586880, 191 x 320 KiB): issue 19 wants peak RSS <= 64 MiB.
# Uses /usr/bin/time -v (installs the `time` package if missing).
# Usage: scripts/measure-rss.sh [SIZE_MIB ...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
command -v /usr/bin/time >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
cargo build --release
bin=$PWD/target/release/shareuplift
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(256 1024)
source scripts/lib-emulator.sh

for size in "${sizes[@]}"; do
  start_emulator '{}'
  mount_emulator "chunk_size = \"10MiB\"" /usr/bin/time -v -o "$work/time.txt"
  head -c "$((size * 1024 * 1024))" /dev/zero | tr '\0' 'x' > "$work/f.bin"
  cp "$work/f.bin" "$mnt/f.bin"
  wait_all_done
  stop_mount
  rss=$(grep "Maximum resident set size" "$work/time.txt" | awk '{print $NF}')
  echo "file ${size} MiB: peak RSS of the mount process $((rss / 1024)) MiB"
  stop_emulator
done

four=${FOUR_MIB:-1024}
if [ "$four" -gt 0 ]; then
  start_emulator '{}'
  mount_emulator "chunk_size = 62586880" /usr/bin/time -v -o "$work/time.txt"
  head -c "$((four * 1024 * 1024))" /dev/zero | tr '\0' 'x' > "$work/f.bin"
  pids=(); for i in 1 2 3 4; do cp "$work/f.bin" "$mnt/f$i.bin" & pids+=($!); done
  wait "${pids[@]}"
  sleep 2
  busy=$(grep -c '"state": *"uploading"' "$mnt/.status.json" || true)
  wait_all_done
  stop_mount
  rss=$(grep "Maximum resident set size" "$work/time.txt" | awk '{print $NF}')
  echo "four files of ${four} MiB at once, 62586880-byte fragments ($busy uploading together 2 s after the writes): peak RSS of the mount process $((rss / 1024)) MiB (<= 64 wanted)"
  stop_emulator
fi
