#!/usr/bin/env bash
# Field soak (issue 17): the mount under every field behaviour of
# ../shared/reference/sharepoint-field-behaviour.md at once, at realistic rates
# (`shareuplift emulator --field-profile field`), for SECONDS seconds of work:
#   each round: rsync -a of a mixed tree (folders, 1 KiB – 3 MiB files), cp of a big file,
#   in-place edits of files from earlier rounds, read-backs compared with cmp, and remote
#   changes (files added and deleted through the emulator's admin API, read through the mount).
# Then it waits for the queue to settle and checks:
#   - every file written through the mount is in the emulator, byte-identical;
#   - every remote change is seen through the mount;
#   - no upload `failed` (the profile only injects behaviours the reference says must succeed);
#   - the emulator counted 0 protocol violations.
# Prints one summary line per check and exits non-zero if any fails.
# Usage: scripts/field-soak.sh [SECONDS]   (default 300)
#   LAT_MS=5   latency per request;   BIG_MIB=32   the big file of each round
#   ROUND_SECS=10   a round starts at most this often (bounds the data a soak moves)
#   PROFILE=dev   use the dev build instead of the release build
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-300}
lat=${LAT_MS:-5}
big_mib=${BIG_MIB:-32}
round_secs=${ROUND_SECS:-10}
if [ -n "${SHAREUPLIFT_BIN:-}" ]; then
  bin=$SHAREUPLIFT_BIN
elif [ "${PROFILE:-release}" = dev ]; then
  cargo build; bin=$PWD/target/debug/shareuplift
else
  cargo build --release; bin=$PWD/target/release/shareuplift
fi
source scripts/lib-emulator.sh

now() { date +%s; }
admin() { val admin_url; }
folder_path() { val folder_url | sed 's#^.*/Shared Documents/##'; }
# urlenc PATH: percent-encode each segment of a drive path for the admin API.
urlenc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$1"; }

EMU_ARGS="--field-profile field" start_emulator '{}' "{\"latency_ms\": $lat}"
MOUNT_WAIT_SECS=120 mount_emulator "poll_interval = 5
dir_cache_time = 10"
fp=$(folder_path)
exp=$work/expected          # what the mount folder must hold at the end (soak/ subtree)
mkdir -p "$exp" "$mnt/soak"
remote_seen_bad=0; read_bad=0; rounds=0; written=0; edits=0; remote_adds=0; remote_dels=0

# random_tree DIR ROUND: 3 folders of 12 files, 1 KiB to 3 MiB, some with spaces.
random_tree() {
  local d f size
  for d in 1 2 3; do
    mkdir -p "$1/r$2/dir $d"
    for f in $(seq 1 12); do
      size=$(( (RANDOM % 8 == 0) ? (RANDOM % 3 + 1) * 1048576 + RANDOM : (RANDOM % 64 + 1) * 1024 ))
      head -c "$size" /dev/urandom > "$1/r$2/dir $d/f$f.bin"
    done
  done
}

t_end=$(( $(now) + dur ))
while [ "$(now)" -lt "$t_end" ]; do
  rounds=$(( rounds + 1 )); r=$rounds; t_round=$(now)
  # 1. rsync of a mixed tree.
  random_tree "$exp" "$r"
  rsync -a "$exp/r$r/" "$mnt/soak/r$r/"
  written=$(( written + 36 ))
  # 2. cp of a big file.
  head -c $(( big_mib * 1048576 )) /dev/urandom > "$exp/big$r.bin"
  cp "$exp/big$r.bin" "$mnt/soak/big$r.bin"
  written=$(( written + 1 ))
  if [ "$r" -gt 1 ]; then
    p=$(( r - 1 ))
    # 3. in-place edits of files of the previous round (written, maybe still uploading).
    for f in 1 5 9; do
      rel="r$p/dir 2/f$f.bin"
      printf 'EDIT-%s-%s' "$r" "$f" | dd of="$exp/$rel" bs=1 seek=100 conv=notrunc status=none
      printf 'EDIT-%s-%s' "$r" "$f" | dd of="$mnt/soak/$rel" bs=1 seek=100 conv=notrunc status=none
      edits=$(( edits + 1 ))
    done
    # 4. read-backs through the mount.
    for rel in "r$p/dir 1/f3.bin" "r$p/dir 3/f7.bin" "big$p.bin"; do
      cmp -s "$exp/$rel" "$mnt/soak/$rel" || { echo "read-back differs: $rel"; read_bad=$(( read_bad + 1 )); }
    done
  fi
  # 5. remote changes: two files added elsewhere, one earlier remote file deleted elsewhere.
  mkdir -p "$exp/remote"
  for k in 1 2; do
    head -c $(( (RANDOM % 512 + 1) * 1024 )) /dev/urandom > "$exp/remote/r$r-$k.bin"
    curl -sf -X PUT --data-binary "@$exp/remote/r$r-$k.bin" \
      "$(admin)/files/Documents/$(urlenc "$fp/soak/remote/r$r-$k.bin")" >/dev/null
    remote_adds=$(( remote_adds + 1 ))
  done
  if [ "$r" -gt 1 ]; then
    curl -sf -X DELETE "$(admin)/files/Documents/$(urlenc "$fp/soak/remote/r$(( r - 1 ))-1.bin")" >/dev/null
    rm -f "$exp/remote/r$(( r - 1 ))-1.bin"
    remote_dels=$(( remote_dels + 1 ))
  fi
  # The mount lists the folder the remote changes land in, so they must come through the
  # change feed (not a first listing) to be seen at the end.
  ls "$mnt/soak/remote" >/dev/null 2>&1 || true
  while [ $(( $(now) - t_round )) -lt "$round_secs" ] && [ "$(now)" -lt "$t_end" ]; do sleep 1; done
done

# Settle: no upload queued, uploading or retrying (bounded: SETTLE_SECS, default 15 minutes).
for _ in $(seq $(( ${SETTLE_SECS:-900} * 5 ))); do
  grep -q '"state": *"\(queued\|uploading\|retrying\)"' "$mnt/.status.json" || break
  sleep 0.2
done
failed=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(1 for u in d.get("uploads", []) if u.get("state") == "failed"))' "$mnt/.status.json")
busy=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(1 for u in d.get("uploads", []) if u.get("state") in ("queued","uploading","retrying")))' "$mnt/.status.json")
if [ "$failed" != 0 ] || [ "$busy" != 0 ]; then
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); [print(u["state"], u["path"], u.get("uploaded"), "/", u.get("size"), u.get("attempts"), u.get("error")) for u in d.get("uploads", []) if u.get("state") not in ("done",)]' "$mnt/.status.json" | head -20
fi

# Remote changes as the mount shows them, after one poll interval and the listing cache.
sleep 16
for f in "$exp"/remote/*.bin; do
  n=$(basename "$f")
  cmp -s "$f" "$mnt/soak/remote/$n" || { echo "remote change not seen: $n"; remote_seen_bad=$(( remote_seen_bad + 1 )); }
done
for n in $(ls "$mnt/soak/remote" 2>/dev/null); do
  [ -e "$exp/remote/$n" ] || { echo "remote delete not seen: $n"; remote_seen_bad=$(( remote_seen_bad + 1 )); }
done

# Every file written through the mount, byte-identical in the emulator.
mismatch=0; checked=0
while IFS= read -r -d '' f; do
  rel=${f#"$exp/"}
  case "$rel" in remote/*) continue ;; esac
  checked=$(( checked + 1 ))
  if ! curl -sf "$(admin)/files/Documents/$(urlenc "$fp/soak/$rel")" -o "$work/got"; then
    echo "missing in SharePoint: $rel"; mismatch=$(( mismatch + 1 )); continue
  fi
  cmp -s "$f" "$work/got" || { echo "differs in SharePoint: $rel"; mismatch=$(( mismatch + 1 )); }
done < <(find "$exp" -type f -print0)

violations=$(curl -s "$(admin)/violations" | python3 -c 'import json,sys; v=json.load(sys.stdin); print(len(v) if isinstance(v, list) else len(v.get("violations", [])))')
stats=$(curl -s "$(admin)/stats")
requests=$(echo "$stats" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(sum(v for k,v in s["by_kind"].items() if k!="token"))')
injected=$(echo "$stats" | python3 -c '
import json, sys
s = json.load(sys.stdin)
out = {k: s.get(k) for k in ["throttled", "errors_injected", "drops", "sessions_expired", "budget_refused", "blocked_refused"]}
for group in ["field_faults", "read_faults"]:
    out.update(s.get(group) or {})
print(", ".join(f"{k} {v}" for k, v in sorted(out.items()) if isinstance(v, int) and v) or "none counted")')

echo "field soak: ${dur} s at ${lat} ms, $rounds rounds; $written files written ($edits in-place edits), $remote_adds remote adds, $remote_dels remote deletes; $requests requests"
echo "field soak: injected: $injected"
echo "field soak: uploads failed: $failed; still busy: $busy"
echo "field soak: files checked in SharePoint: $checked, missing or different: $mismatch"
echo "field soak: read-backs different: $read_bad; remote changes not seen: $remote_seen_bad"
echo "field soak: protocol violations: $violations"
stop_mount; stop_emulator
if [ "$failed" = 0 ] && [ "$busy" = 0 ] && [ "$mismatch" = 0 ] && [ "$read_bad" = 0 ] \
  && [ "$remote_seen_bad" = 0 ] && [ "$violations" = 0 ]; then
  echo "field soak: PASS"
else
  echo "field soak: FAIL"; tail -n 30 "$work/mount.log"; exit 1
fi
