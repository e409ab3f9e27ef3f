#!/usr/bin/env bash
# fsx on the mount: 100,000 random operations (reads, writes, truncates, mmap reads and
# writes, fsync, and close/reopen — each close hands the file to the upload queue and the next
# write fetches it back) per seed, three seeds. fsx checks every read against its model as it
# goes. fsx saves its model (`.fsxgood`) only on failure, so the reference for the final
# content is the same seed run on a local file (fsx's operations depend only on the seed and
# its model). After the uploads finish, the mount is replaced by a fresh one with an empty
# spool, so each file is read back from SharePoint (the emulator), and compared byte for byte.
# Installs fsx if missing. Usage: scripts/fsx.sh [OPS] [SEED...]   (run as root)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
ops=${1:-100000}; shift || true
seeds=("$@"); [ ${#seeds[@]} -gt 0 ] || seeds=(1 2 3)
export PATH="$HOME/.cargo/bin:$PATH"
command -v fsx >/dev/null || cargo install --locked fsx
bash scripts/install-deps.sh
cargo build --bin shareuplift
bin=$root/target/debug/shareuplift
source scripts/lib-emulator.sh
cat > "$work/fsx.toml" <<'TOML'
flen = 1048576
[weights]
read = 10
write = 10
truncate = 5
mapread = 5
mapwrite = 5
fsync = 0.5
close_open = 0.2
TOML
mkdir -p "$work/model" "$work/art"
start_emulator '{}'
mount_emulator ''
mkdir -p "$mnt/fsx"
for s in "${seeds[@]}"; do
  f=seed$s.bin
  echo "== fsx -N $ops -S $s on the mount"
  start=$(date +%s)
  if ! fsx -q -N "$ops" -S "$s" -f "$work/fsx.toml" -P "$work/art" "$mnt/fsx/$f" >"$work/fsx-$s.log" 2>&1; then
    echo "fsx FAILED on seed $s:"; tail -40 "$work/fsx-$s.log"; exit 1
  fi
  grep -q "A-OK" "$work/fsx-$s.log" || { echo "fsx did not report A-OK:"; tail "$work/fsx-$s.log"; exit 1; }
  echo "   A-OK in $(( $(date +%s) - start )) s"
  fsx -q -N "$ops" -S "$s" -f "$work/fsx.toml" -P "$work/art" "$work/model/$f" >"$work/model-$s.log" 2>&1 \
    || { echo "the local model run failed:"; tail "$work/model-$s.log"; exit 1; }
done
echo "== waiting for the uploads"
wait_all_done
stop_mount
echo "== a fresh mount (empty spool): reading back from SharePoint"
mount_emulator ''
bad=0
for s in "${seeds[@]}"; do
  f=seed$s.bin
  if cmp "$mnt/fsx/$f" "$work/model/$f"; then
    echo "   $f: $(stat -c %s "$work/model/$f") bytes, identical to the model"
  else
    echo "   $f: DIFFERS from the model"; bad=1
  fi
done
stop_mount
[ $bad = 0 ] || exit 1
echo "fsx OK: ${#seeds[@]} seeds x $ops operations A-OK, SharePoint's copies identical"
