#!/usr/bin/env bash
# Progress you can watch, shown in tmux: start the emulator with a 20 MB/s link, mount it, copy
# two 100 MiB files, run `shareuplift status --watch` in one tmux pane and
# `shareuplift wait --progress` on the two files in another, capture both panes
# (`tmux capture-pane -p`) at several moments and print the captures. Exits non-zero unless the
# captures show the percentages changing and the wait ending at done.
# Usage: scripts/watch-demo.sh [MIB_PER_FILE]   (BIN=path to use another binary, COLS=pane width)
set -euo pipefail
cd "$(dirname "$0")/.."
mib=${1:-100}
command -v tmux >/dev/null || { echo "tmux is needed (apt-get install tmux)"; exit 1; }
bash scripts/install-deps.sh
if [ -z "${BIN:-}" ]; then cargo build --bin shareuplift; fi
bin=${BIN:-$PWD/target/debug/shareuplift}
source scripts/lib-emulator.sh
sess=shareuplift-watch-$$
trap 'tmux kill-session -t "$sess" 2>/dev/null || true; _cleanup' EXIT

echo "== emulator with a 20 MB/s link; mounting at $mnt"
start_emulator '{"bandwidth_bytes_per_sec": 20000000}'
mount_emulator 'chunk_size = "5MiB"'

echo "== generating two ${mib} MiB files"
for f in a b; do head -c "$((mib * 1024 * 1024))" /dev/urandom > "$work/$f.bin"; done
echo "== cp a.bin b.bin to the mount (in parallel)"
cp "$work/a.bin" "$mnt/" & cp_a=$!
cp "$work/b.bin" "$mnt/" & cp_b=$!
wait "$cp_a" "$cp_b"

# Pane 0: the live status view; pane 1: one bar for the two files.
# Each pane's shell stays after the command (its last frame stays visible for the capture).
tmux new-session -d -s "$sess" -x "${COLS:-150}" -y 24 \
  "$bin status --watch $mnt; echo \"status --watch exit \$?\"; sleep 600"
tmux split-window -t "$sess" -v -l 6 \
  "$bin wait --progress $mnt/a.bin $mnt/b.bin; echo \"wait exit \$?\"; sleep 600"

captures=()
for i in 1 2 3 4; do
  sleep 2.5
  c=$(printf '%s\n--- wait --progress pane ---\n%s' \
        "$(tmux capture-pane -p -t "$sess.0")" "$(tmux capture-pane -p -t "$sess.1")")
  captures+=("$c")
  echo "== capture $i ($(date +%T))"
  printf '%s\n' "$c" | sed '/^$/d'
done
wait_all_done
sleep 1.5
final=$(tmux capture-pane -p -t "$sess.1")
echo "== both panes after the uploads"
tmux capture-pane -p -t "$sess.0" | sed '/^$/d'
echo "--- wait --progress pane ---"
printf '%s\n' "$final" | sed '/^$/d'

# The percentages shown must differ between the first and the last capture.
pcts() { printf '%s\n' "$1" | grep -o '[0-9]\{1,3\}%' | tr '\n' ' '; }
first=$(pcts "${captures[0]}"); last=$(pcts "${captures[${#captures[@]}-1]}")
echo "== percentages: first capture [$first], last capture [$last]"
[ -n "$first" ] || { echo "FAIL: no progress bar in the first capture"; exit 1; }
[ "$first" != "$last" ] || { echo "FAIL: the bars did not move"; exit 1; }
printf '%s\n' "$final" | grep -q "2/2 files — done" && printf '%s\n' "$final" | grep -q "wait exit 0" \
  || { echo "FAIL: wait --progress did not end at done"; exit 1; }
items=$(curl -s "$(val admin_url)/items")
for f in a b; do
  remote=$(printf '%s' "$items" | grep -o "\"path\": *\"Uploads/$f.bin\"[^}]*" \
    | grep -o '"quickXorHash": *"[^"]*"' | sed 's/.*: *"\(.*\)"/\1/')
  [ "$("$bin" quickxor "$work/$f.bin")" = "$remote" ] || { echo "FAIL: $f.bin differs"; exit 1; }
done
stop_mount
echo "watch demo OK: the bars moved and both files are in SharePoint"
