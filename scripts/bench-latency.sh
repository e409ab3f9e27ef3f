#!/usr/bin/env bash
# Field conditions benchmark (issue 10): the emulator answers every Graph request after
# LAT_MS ms; prints one line per figure, with request counts from the admin endpoint.
# Usage: scripts/bench-latency.sh [LAT_MS]   (default 50)
# Smaller runs (the figures then say which N they are for):
#   RSYNC_FOLDERS=10 RSYNC_FILES=100   the rsync tree (folders x files of 4 KiB)
#   WALK_FOLDERS=100 WALK_FILES=100    the seeded tree of the walk
#   BIG_MIB=1024                       the single big file (SERVER_MS=200: server time per fragment)
set -euo pipefail
cd "$(dirname "$0")/.."
lat=${1:-50}
rf=${RSYNC_FOLDERS:-10}; rn=${RSYNC_FILES:-100}; rtotal=$(( rf * rn ))
wf=${WALK_FOLDERS:-100}; wn=${WALK_FILES:-100}; wtotal=$(( wf * wn ))
big_mib=${BIG_MIB:-1024}
# FIGURES=rsync,walk,throttle,budget,big picks some of the figures (default: all; `drops`:
# only the big file with dropped PUTs, DROP_SEED=N picks the emulator's random sequence).
# BUDGET_UNITS=requests|resource_units: how the budget figure charges (default requests).
figures=${FIGURES:-rsync,walk,throttle,budget,big}
want() { [[ ",$figures," == *",$1,"* ]]; }
# PROFILE=dev measures the dev build (opt-level 1, dependencies at 3) when no release build
# is at hand; the report should say which.
if [ -n "${SHAREUPLIFT_BIN:-}" ]; then
  bin=$SHAREUPLIFT_BIN   # an already built binary (A/B against another build)
elif [ "${PROFILE:-release}" = dev ]; then
  cargo build --quiet; bin=$PWD/target/debug/shareuplift
else
  cargo build --release --quiet; bin=$PWD/target/release/shareuplift
fi
source scripts/lib-emulator.sh

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
admin() { val admin_url; }
requests() { curl -s "$(admin)/stats" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(sum(v for k,v in s["by_kind"].items() if k!="token"))'; }
stat_key() { curl -s "$(admin)/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }
reset() { curl -s -X POST "$(admin)/reset_stats" >/dev/null; }

src=$work/src
mkdir -p "$src"
for d in $(seq 1 "$rf"); do
  mkdir -p "$src/d$d"
  for f in $(seq 1 "$rn"); do head -c 4096 /dev/urandom > "$src/d$d/f$f.bin"; done
done
# The mount folder's path inside the drive (admin PUT files/{drive}/{path} needs it).
folder_path() { val folder_url | sed 's#^.*/Shared Documents/##'; }
ms_to_s() { awk -v m="$1" 'BEGIN { printf "%.2f", m / 1000 }'; }

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
  commit_ms=$(( t2 - t0 ))
  echo "$1: rsync returns $(ms_to_s $(( t1 - t0 ))) s; all $rtotal committed $(ms_to_s "$commit_ms") s; $(( rtotal * 1000 / (commit_ms > 0 ? commit_ms : 1) )) files/s; $n requests"
}

field="{\"latency_ms\": $lat}"
if want rsync; then
rsync_run "[$lat ms] rsync ${rtotal}x4KiB in $rf folders" '{}' "$field"
reset; t0=$(now_ms)
moved=$(rsync -a --stats "$src/" "$mnt/tree/" | awk -F': ' '/Number of regular files transferred/ {print $2}')
t1=$(now_ms)
echo "[$lat ms] second rsync: $moved files transferred, $(ms_to_s $(( t1 - t0 ))) s, $(requests) requests (<= 3 s, <= 20 wanted)"
stop_mount; stop_emulator
fi

# Seeded tree: WALK_FOLDERS x WALK_FILES files, created through the admin API inside the mount
# folder (not through the mount).
if want walk; then
start_emulator '{}' '{}'
fp=$(folder_path)
cfg=$work/seed.curl; : > "$cfg"; echo x > "$work/x"
for d in $(seq 1 "$wf"); do
  for f in $(seq 1 "$wn"); do printf 'upload-file = "%s"\nurl = "%s/files/Documents/%s/seed/d%s/f%s.txt"\noutput = "/dev/null"\n' "$work/x" "$(admin)" "$fp" "$d" "$f" >> "$cfg"; done
done
curl -s -Z --parallel-max 16 -K "$cfg" >/dev/null 2>&1
curl -s -X POST --data "$field" "$(admin)/field" >/dev/null
mount_emulator ""
sleep 1; reset
t0=$(now_ms); seen=$(ls -lR "$mnt/seed" | grep -c '^-'); t1=$(now_ms)
echo "[$lat ms] ls -lR over $wtotal files/$wf folders ($seen seen), first walk: $(requests) requests (<= 150 wanted at 10,000/100), $(ms_to_s $(( t1 - t0 ))) s"
reset; t0=$(now_ms); find "$mnt/seed" -type f | wc -l >/dev/null; ls -lR "$mnt/seed" >/dev/null; t1=$(now_ms)
echo "[$lat ms] second walk (find + ls -lR): $(requests) requests (0 wanted), $(ms_to_s $(( t1 - t0 ))) s"
stop_mount; stop_emulator
fi

if want throttle; then
rsync_run "[$lat ms] rsync with 10 % 429s" '{"seed": 7, "throttle_rate": 0.1, "retry_after_secs": 1, "apply_to": "all"}' "$field"
echo "[$lat ms] 429 run: $(stat_key throttled) answered 429; requests arriving inside a Retry-After window: $(stat_key requests_inside_retry_after) (of which $(stat_key requests_inside_retry_after_late) arrived 5 ms or more after the 429 left)"
stop_mount; stop_emulator
fi

# The budget figures (issue 16, field reference entries 5-7): a budget of 20 a second whose
# refusals cost (the emulator's default), a bucket of one second, once without RateLimit-*
# headers (the per-user limit, or an app that never reaches 80 % of its minute) and once
# with them. BUDGET_UNITS=resource_units charges SharePoint's resource units per request kind
# (2 for a createUploadSession or a fragment PUT) instead of one per request.
# The floor is the units the run needed (those admitted, less the upload-URL status GETs,
# which only a failed request makes necessary) at 20 a second.
budget_units=${BUDGET_UNITS:-requests}
budget_run() {
  rsync_run "[$lat ms] rsync at budget 20/s ($budget_units), refusals cost, $1" '{}' \
    "{\"latency_ms\": $lat, \"budget_per_sec\": 20, \"budget_burst\": 20, \"budget_units\": \"$budget_units\", \"rate_limit_headers\": $2}"
  local admitted refused units_refused other sent need floor_ms
  admitted=$(stat_key budget_units_admitted); units_refused=$(stat_key budget_units_refused)
  refused=$(stat_key budget_refused); sent=$(requests)
  other=$(curl -s "$(admin)/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["by_kind"]["upload_url_other"])')
  need=$(( admitted - other ))
  floor_ms=$(( need * 1000 / 20 ))
  echo "[$lat ms] budget run, $1: commit $(ms_to_s "$commit_ms") s = $(awk -v c="$commit_ms" -v f="$floor_ms" 'BEGIN { printf "%.3f", c / (f > 0 ? f : 1) }') x floor $(ms_to_s "$floor_ms") s ($need units needed, $admitted admitted, $units_refused charged for refusals); refused $refused of $sent requests ($(awk -v r="$refused" -v t="$sent" 'BEGIN { printf "%.2f", (t > 0 ? 100 * r / t : 0) }') %); inside Retry-After: $(stat_key requests_inside_retry_after)"
  stop_mount; stop_emulator
}
if want budget; then
budget_run "no RateLimit headers" false
budget_run "RateLimit headers from 80 % of the minute" true
fi

# The big file (issue 19). At any LAT_MS: the upload phase of one BIG_MIB file through the
# mount (from the mount's own "uploaded ... MB/s" log line: session to commit), with
# SERVER_MS ms of server time per fragment (emulator knob fragment_server_ms, default 0), then
# a plain client sending 60 MiB fragments one after another over the same emulator
# (scripts/plain-client.sh), then the same file with 5 % of fragment PUTs dropped mid-body
# (bytes the emulator received / file size). At 0 ms also the end-to-end figure.
# BIG_TOML: extra mount configuration (e.g. 'chunk_size = "60MiB"').
server_ms=${SERVER_MS:-0}
big_bytes=$(( big_mib * 1024 * 1024 ))
upload_phase() { grep -o "uploaded $1 ([0-9]* bytes) in [0-9.]* s, [0-9.]* MB/s" "$work/mount.log" | tail -1 | sed 's/.*, //'; }
if want big; then
  tag="[$lat ms + $server_ms ms/fragment]"
  start_emulator '{}' "{\"latency_ms\": $lat, \"fragment_server_ms\": $server_ms}"
  mount_emulator "${BIG_TOML:-}"
  sleep 1; reset
  t0=$(now_ms); head -c "$big_bytes" /dev/zero > "$mnt/big.bin"; t1=$(now_ms); wait_all_done; t2=$(now_ms)
  echo "$tag $big_mib MiB file: write returns $(ms_to_s $(( t1 - t0 ))) s; upload phase $(upload_phase big.bin) (mount log); committed at $(awk -v b="$big_mib" -v m=$(( t2 - t0 )) 'BEGIN { printf "%.0f", b * 1.048576 * 1000 / (m > 0 ? m : 1) }') MB/s end to end ($(ms_to_s $(( t2 - t0 ))) s); $(stat_key fragment_puts) fragment PUTs"
  head -c "$big_bytes" /dev/zero > "$work/big.src"
  echo "$tag $(bash scripts/plain-client.sh "$work/ready.json" "$work/big.src" 60)"
  rm -f "$work/big.src"
  stop_mount; stop_emulator
fi
if want big || want drops; then
  tag="[$lat ms + $server_ms ms/fragment]"
  start_emulator "{\"seed\": ${DROP_SEED:-2}, \"drop_rate\": 0.05}" "{\"latency_ms\": $lat, \"fragment_server_ms\": $server_ms}"
  mount_emulator "${BIG_TOML:-}"
  sleep 1; reset
  head -c "$big_bytes" /dev/zero > "$mnt/big.bin"; wait_all_done
  received=$(stat_key fragment_bytes_received)
  echo "$tag $big_mib MiB file, 5 % of fragment PUTs dropped mid-body: $(stat_key drops) drops in $(stat_key fragment_puts) PUTs; emulator received $received bytes = $(awk -v r="$received" -v b="$big_bytes" 'BEGIN { printf "%.3f", r / b }') x the file (<= 1.1 wanted); upload phase $(upload_phase big.bin)"
  stop_mount; stop_emulator
fi
