#!/usr/bin/env bash
# Scale benchmark (issue 19): many small files, and many files in one folder.
#  1. SCALE_FOLDERS x SCALE_FILES files of 1 KiB (default 1,000 x 100 = 100,000) copied by
#     rsync into a fresh mount, the emulator answering every request after SCALE_LAT_MS ms
#     (default 5): files/s end to end (until all committed), peak RSS of the mount (VmHWM),
#     .status.json size and the time to read it; then kill -9 of the mount, a remount on the
#     same spool, and a check that every file is in SharePoint with the right quickXorHash.
#  2. FLAT_FILES files (default 20,000) of 1 KiB in one folder at 0 ms: rsync files/s, `ls -l`
#     of the folder from the cache, and a stat of a missing name (in that folder and, for
#     comparison, in a folder of 10 files).
# Targets: >= 600 files/s, VmHWM <= 100 MiB, .status.json <= 1 MB read in < 0.1 s; one folder
# >= 600 files/s, ls -l < 0.5 s. PARTS=scale,flat picks parts (default both); MOUNT_WRAPPER
# runs the mount under a command (e.g. "env MALLOC_ARENA_MAX=2").
# Usage: scripts/bench-scale.sh   (SHAREUPLIFT_BIN=... to measure an already built binary)
set -euo pipefail
cd "$(dirname "$0")/.."
folders=${SCALE_FOLDERS:-1000}; per=${SCALE_FILES:-100}; total=$(( folders * per ))
lat=${SCALE_LAT_MS:-5}
flat=${FLAT_FILES:-20000}
parts=${PARTS:-scale,flat}
want() { [[ ",$parts," == *",$1,"* ]]; }
source scripts/lib-emulator.sh
if [ -n "${SHAREUPLIFT_BIN:-}" ]; then bin=$(realpath "$SHAREUPLIFT_BIN"); else build_release; fi

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
ms_to_s() { awk -v m="$1" 'BEGIN { printf "%.2f", m / 1000 }'; }
rate() { echo $(( $1 * 1000 / ($2 > 0 ? $2 : 1) )); }
vmhwm() { awk '/^VmHWM/ {print int($2 / 1024)}' "/proc/$mount_pid/status"; }
vmrss() { awk '/^VmRSS/ {print int($2 / 1024)}' "/proc/$mount_pid/status"; }

# make_tree DIR FOLDERS FILES: FOLDERS folders (0: the files directly in DIR) of FILES x 1 KiB.
make_tree() {
  python3 - "$@" <<'PY'
import os, sys
root, folders, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
dirs = [root] if folders == 0 else [os.path.join(root, "d%d" % d) for d in range(1, folders + 1)]
for d in dirs:
    os.makedirs(d, exist_ok=True)
    for f in range(1, files + 1):
        with open(os.path.join(d, "f%d.bin" % f), "wb") as fh:
            fh.write(os.urandom(1024))
PY
}

# Wait until nothing is queued, uploading, retrying or open for writing (no time limit but
# WAIT_SECS, default 3600); fail on a failed upload.
wait_committed() {
  local deadline=$(( $(date +%s) + ${WAIT_SECS:-3600} ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    local st; st=$(cat "$mnt/.status.json")
    if ! grep -q '"state": *"\(queued\|uploading\|retrying\)"' <<<"$st" \
       && ! grep -q '"open_for_writing"' <<<"$st"; then
      if grep -q '"state": *"failed"' <<<"$st"; then echo "an upload failed:"; head -50 "$mnt/.status"; exit 1; fi
      return 0
    fi
    sleep 0.5
  done
  echo "uploads did not finish"; head -50 "$mnt/.status"; exit 1
}

# check_server SRC PREFIX: every file of SRC is in SharePoint under PREFIX with its hash.
check_server() {
  (cd "$1" && find . -type f -printf '%P\0' | xargs -0 "$bin" quickxor) > "$work/local.qxh"
  curl -s "$(val admin_url)/items" > "$work/items.json"
  python3 - "$work/local.qxh" "$work/items.json" "$2" <<'PY'
import json, sys
local = {}
for line in open(sys.argv[1]):
    h, p = line.rstrip("\n").split("  ", 1)
    local[p] = h
items = json.load(open(sys.argv[2]))["items"]
prefix = sys.argv[3]
remote = {}
for i in items:
    p = i["path"]
    k = p.find("/" + prefix + "/")
    if not i.get("folder") and k >= 0:
        remote[p[k + len(prefix) + 2:]] = i.get("quickXorHash")
missing = [p for p in local if p not in remote]
wrong = [p for p in local if p in remote and remote[p] != local[p]]
print("%d local files: %d in SharePoint, %d missing, %d with a wrong hash" % (len(local), len(local) - len(missing), len(missing), len(wrong)))
sys.exit(1 if missing or wrong else 0)
PY
}

if want scale; then
  echo "== generating $total files of 1 KiB in $folders folders"
  src=$work/src; make_tree "$src" "$folders" "$per"
  start_emulator '{}' "{\"latency_ms\": $lat}"
  mount_emulator "" ${MOUNT_WRAPPER:-}
  sleep 1
  t0=$(now_ms)
  rsync -a "$src/" "$mnt/tree/" || { echo "rsync failed; the mount's log:"; grep -v ' INFO ' "$work/mount.log" | tail -30; exit 1; }
  t1=$(now_ms)
  echo "[$lat ms] rsync of $total x 1 KiB in $folders folders returned after $(ms_to_s $(( t1 - t0 ))) s ($(rate "$total" $(( t1 - t0 ))) files/s); RSS now $(vmrss) MiB"
  wait_committed
  t2=$(now_ms)
  echo "[$lat ms] all $total committed after $(ms_to_s $(( t2 - t0 ))) s: $(rate "$total" $(( t2 - t0 ))) files/s end to end (target >= 600)"
  echo "[$lat ms] peak RSS of the mount (VmHWM) $(vmhwm) MiB, now $(vmrss) MiB (target <= 100)"
  r0=$(date +%s%N); cat "$mnt/.status.json" > "$work/status.json"; r1=$(date +%s%N)
  echo "[$lat ms] .status.json: $(stat -c %s "$work/status.json") bytes, read in $(( (r1 - r0) / 1000 )) us (targets <= 1 MB, < 0.1 s); .status.all.json: $(wc -c < "$mnt/.status.all.json") bytes"
  grep -o '"done_summary": *{[^}]*}' "$work/status.json" | tr -s ' \n' ' ' || true; echo
  echo "== kill -9 of the mount, remount on the same spool"
  kill -9 "$mount_pid"; wait "$mount_pid" 2>/dev/null || true; mount_pid=""
  fusermount3 -uz "$mnt" 2>/dev/null || true
  keep_spool=1 mount_emulator "" ${MOUNT_WRAPPER:-}
  sleep 2; wait_committed
  echo "[$lat ms] after the remount: spool data/ holds $(find "$work/spool/data" -type f 2>/dev/null | wc -l) files"
  check_server "$src" tree
  stop_mount; stop_emulator
  rm -rf "$src"
fi

if want flat; then
  echo "== generating $flat files of 1 KiB in one folder"
  src=$work/flat; make_tree "$src" 0 "$flat"
  small=$work/small; make_tree "$small" 0 10
  start_emulator '{}' '{}'
  mount_emulator "" ${MOUNT_WRAPPER:-}
  sleep 1
  rsync -a "$small/" "$mnt/small/"
  t0=$(now_ms)
  rsync -a "$src/" "$mnt/flat/" || { echo "rsync failed; the mount's log:"; grep -v ' INFO ' "$work/mount.log" | tail -30; exit 1; }
  t1=$(now_ms)
  wait_committed
  t2=$(now_ms)
  echo "[0 ms] rsync of $flat x 1 KiB into one folder returned after $(ms_to_s $(( t1 - t0 ))) s: $(rate "$flat" $(( t1 - t0 ))) files/s (target >= 600); all committed after $(ms_to_s $(( t2 - t0 ))) s ($(rate "$flat" $(( t2 - t0 ))) files/s)"
  for i in 1 2 3; do
    t0=$(now_ms); n=$(ls -l "$mnt/flat" | grep -c '^-'); t1=$(now_ms)
    echo "[0 ms] ls -l of the folder from the cache, run $i: $n files in $(ms_to_s $(( t1 - t0 ))) s (target < 0.5 s)"
  done
  python3 - "$mnt/flat" "$mnt/small" <<'PY'
import os, sys, time
for d in sys.argv[1:]:
    t = time.perf_counter()
    for i in range(1000):
        try:
            os.stat(os.path.join(d, "missing-%d" % i))
        except FileNotFoundError:
            pass
    us = (time.perf_counter() - t) * 1e6 / 1000
    print("[0 ms] stat of a missing name in %s (%d entries): %.0f us each (1,000 distinct names)" % (os.path.basename(d), len(os.listdir(d)), us))
PY
  echo "[0 ms] peak RSS of the mount (VmHWM) $(vmhwm) MiB, now $(vmrss) MiB, $(ls /proc/$mount_pid/task | wc -l) threads"
  stop_mount; stop_emulator
fi
