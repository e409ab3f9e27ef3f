#!/usr/bin/env bash
# Long crash-resume soak (issue 3): copy a big file and a few small ones into the mount over a
# bandwidth-limited emulator, then `kill -9` the mount at a random moment, remount on the same
# spool, and repeat until everything is uploaded. At the end every file must be byte-identical
# in the emulator (quickXorHash), the spool empty, no protocol violation recorded, and the
# bytes the emulator received are printed next to the bytes uploaded (resumption means they
# stay close; restarting from zero would multiply them).
#
# Usage: scripts/soak-kill.sh [BIG_MIB=2048] [KILLS=6] [BANDWIDTH_BYTES_PER_SEC=200000000]
set -euo pipefail
cd "$(dirname "$0")/.."
big_mib=${1:-2048}; kills=${2:-6}; bw=${3:-200000000}
cargo build --release
bin=$PWD/target/release/shareuplift
. scripts/lib-emulator.sh

start_emulator "{\"bandwidth_bytes_per_sec\": $bw}"
mount_emulator ""
keep_spool=1
src=$work/src; mkdir -p "$src"
head -c $((big_mib * 1024 * 1024)) /dev/urandom > "$src/big.bin"
for i in 1 2 3 4 5; do head -c $((i * 3 * 1024 * 1024 + 1234)) /dev/urandom > "$src/small$i.bin"; done
total=$(du -cb "$src"/* | tail -1 | cut -f1)
cp "$src"/* "$mnt/"
for k in $(seq "$kills"); do
  sleep "$(awk -v r=$RANDOM 'BEGIN{printf "%.1f", 0.5 + (r % 30) / 10}')"
  if ! grep -q '"state": *"\(queued\|uploading\|retrying\)"' "$mnt/.status.json"; then break; fi
  echo "kill -9 #$k at: $(grep -o '"uploaded": *[0-9]*' "$mnt/.status.json" | head -1)"
  kill -9 "$mount_pid"; wait "$mount_pid" 2>/dev/null || true; mount_pid=""
  fusermount3 -uz "$mnt" || true
  mount_emulator ""
done
wait_all_done
admin=$(val admin_url)
fail=0
for f in "$src"/*; do
  n=$(basename "$f")
  want=$("$bin" quickxor "$f")
  got=$(curl -s "$admin/items" | tr '{' '\n' | grep "\"path\": *\"Uploads/$n\"" | grep -o '"quickXorHash": *"[^"]*"' | cut -d'"' -f4)
  if [ "$want" != "$got" ]; then echo "MISMATCH $n: $want vs $got"; fail=1; fi
done
curl -s "$admin/violations" | grep -q '"violations": *\[\]' || { echo "violations:"; curl -s "$admin/violations"; fail=1; }
sleep 1
left=$(ls "$work/spool/data" | wc -l)
received=$(curl -s "$admin/stats" | grep -o '"fragment_bytes_received": *[0-9]*' | grep -o '[0-9]*$')
echo "files: $(ls "$src" | wc -l), bytes: $total, emulator received: $received, spool files left: $left"
[ "$left" = 0 ] || fail=1
exit $fail
