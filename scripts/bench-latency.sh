#!/usr/bin/env bash
# Field conditions benchmark (issue 10): the emulator answers every Graph request after
# LAT_MS ms; prints one line per figure, with request counts from the admin endpoint.
# Usage: scripts/bench-latency.sh [LAT_MS]   (default 50)
set -euo pipefail
cd "$(dirname "$0")/.."
lat=${1:-50}
cargo build --release --quiet
bin=$PWD/target/release/shareuplift
source scripts/lib-emulator.sh

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
admin() { val admin_url; }
requests() { curl -s "$(admin)/stats" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(sum(v for k,v in s["by_kind"].items() if k!="token"))'; }
stat_key() { curl -s "$(admin)/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }
reset() { curl -s -X POST "$(admin)/reset_stats" >/dev/null; }

src=$work/src
mkdir -p "$src"
for d in $(seq -w 0 9); do
  mkdir -p "$src/d$d"
  for f in $(seq -w 0 99); do head -c 4096 /dev/urandom > "$src/d$d/f$f.bin"; done
done

# rsync_run LABEL FAULTS FIELD: the 1,000-file rsync into a fresh mount.
rsync_run() {
  start_emulator "$2" "$3"
  mount_emulator ""
  sleep 1; reset
  local t0 t1 t2; t0=$(now_ms)
  rsync -a "$src/" "$mnt/tree/"
  t1=$(now_ms)
  wait_all_done
  t2=$(now_ms)
  local n; n=$(requests)
  echo "$1: rsync returns $(( t1 - t0 )) ms; all committed $(( t2 - t0 )) ms; $(( 1000000 / (t2 - t0 > 0 ? t2 - t0 : 1) )) files/s; $n requests"
}

field="{\"latency_ms\": $lat}"
rsync_run "[$lat ms] rsync 1000x4KiB in 10 folders" '{}' "$field"
reset; t0=$(now_ms)
moved=$(rsync -a --stats "$src/" "$mnt/tree/" | awk -F': ' '/Number of regular files transferred/ {print $2}')
t1=$(now_ms)
echo "[$lat ms] second rsync: $moved files transferred, $(( t1 - t0 )) ms, $(requests) requests"
stop_mount; stop_emulator

# Seeded tree: 10,000 files in 100 folders, created through the admin API (not the mount).
start_emulator '{}' '{}'
cfg=$work/seed.curl; : > "$cfg"; echo x > "$work/x"
for d in $(seq -w 0 99); do
  for f in $(seq -w 0 99); do printf 'upload-file = "%s"\nurl = "%s/files/Documents/seed/d%s/f%s.txt"\noutput = "/dev/null"\n' "$work/x" "$(admin)" "$d" "$f" >> "$cfg"; done
done
curl -s -Z --parallel-max 16 -K "$cfg"
curl -s -X POST --data "$field" "$(admin)/field" >/dev/null
mount_emulator ""
sleep 1; reset
t0=$(now_ms); ls -lR "$mnt/seed" | wc -l >/dev/null; t1=$(now_ms)
echo "[$lat ms] ls -lR over 10,000 files/100 folders, first walk: $(requests) requests, $(( t1 - t0 )) ms"
reset; t0=$(now_ms); find "$mnt/seed" -type f | wc -l >/dev/null; ls -lR "$mnt/seed" >/dev/null; t1=$(now_ms)
echo "[$lat ms] second walk (find + ls -lR): $(requests) requests, $(( t1 - t0 )) ms"
stop_mount; stop_emulator

rsync_run "[$lat ms] rsync with 10 % 429s" '{"seed": 7, "throttle_rate": 0.1, "retry_after_secs": 1, "apply_to": "all"}' "$field"
echo "[$lat ms] 429 run: requests inside Retry-After: $(stat_key requests_inside_retry_after)"
stop_mount; stop_emulator

rsync_run "[$lat ms] rsync at budget 20 req/s" '{}' "{\"latency_ms\": $lat, \"budget_per_sec\": 20, \"budget_burst\": 20}"
refused=$(stat_key budget_refused); total=$(requests)
echo "[$lat ms] budget run: floor $(( total / 20 )) s for $total requests; refused $refused ($(( 100 * refused / (total > 0 ? total : 1) )) %)"
stop_mount; stop_emulator

if [ "$lat" = 0 ]; then
  start_emulator '{}' '{}'
  mount_emulator ""
  head -c $((1024 * 1024 * 1024)) /dev/zero > "$work/big.bin"
  t0=$(now_ms); cp "$work/big.bin" "$mnt/big.bin"; wait_all_done; t1=$(now_ms)
  echo "[0 ms] 1 GiB upload: $(( 1024 * 1000 / (t1 - t0 > 0 ? t1 - t0 : 1) )) MiB/s"
  stop_mount; stop_emulator
fi
