#!/usr/bin/env bash
# The main job, end to end on the built-in emulator: start a local SharePoint, mount it, copy a
# generated 200 MiB file with cp, watch .status until SharePoint has it, verify the hash,
# unmount. Installs fuse3 if missing. Usage: scripts/demo.sh [SIZE_MIB]
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-200}
bash scripts/install-deps.sh
cargo build --release --quiet
bin=$PWD/target/release/shareuplift

work=$(mktemp -d /tmp/shareuplift-demo.XXXXXX)
mnt=$work/mnt
mkdir -p "$mnt"
emu_pid=""; mount_pid=""
cleanup() {
  if mountpoint -q "$mnt" 2>/dev/null; then fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -uz "$mnt" || true; fi
  [ -n "$mount_pid" ] && wait "$mount_pid" 2>/dev/null || true
  [ -n "$emu_pid" ] && kill "$emu_pid" 2>/dev/null && wait "$emu_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== starting the local SharePoint emulator (100 MB/s link)"
"$bin" emulator --data "$work/emu" --ready-file "$work/ready.json" \
  --faults '{"bandwidth_bytes_per_sec": 100000000}' 2>"$work/emulator.log" &
emu_pid=$!
for _ in $(seq 100); do [ -s "$work/ready.json" ] && break; sleep 0.1; done
[ -s "$work/ready.json" ] || { echo "emulator did not start"; cat "$work/emulator.log"; exit 1; }
val() { grep -o "\"$1\": *\"[^\"]*\"" "$work/ready.json" | head -1 | sed 's/^[^:]*: *"\(.*\)"$/\1/'; }

cat > "$work/config.toml" <<TOML
site_url = "$(val site_url)"
folder_url = "$(val folder_url)"
username = "$(val username)"
client_id = "$(val client_id)"
tenant = "$(val tenant)"
graph_url = "$(val graph_url)"
authority_url = "$(val authority_url)"
spool_dir = "$work/spool"
chunk_size = "10MiB"
TOML
echo "== mounting $(val folder_url) at $mnt"
SHAREUPLIFT_PASSWORD="$(val password)" "$bin" mount --config "$work/config.toml" "$mnt" 2>"$work/mount.log" &
mount_pid=$!
for _ in $(seq 100); do mountpoint -q "$mnt" && break; sleep 0.1; done
mountpoint -q "$mnt" || { echo "mount failed"; cat "$work/mount.log"; exit 1; }

echo "== generating a ${size_mib} MiB file"
head -c "$((size_mib * 1024 * 1024))" /dev/urandom > "$work/big.bin"
mkdir -p "$mnt/Docs"
echo "== cp big.bin $mnt/Docs/"
start=$(date +%s%N)
cp "$work/big.bin" "$mnt/Docs/"
end=$(date +%s%N)
echo "cp returned after $(( (end - start) / 1000000 )) ms; the upload runs in the background:"
for _ in $(seq 600); do
  clear 2>/dev/null || true
  cat "$mnt/.status"
  grep -q '"state": *"done"' "$mnt/.status.json" && break
  if grep -q '"state": *"failed"' "$mnt/.status.json"; then echo "upload failed"; exit 1; fi
  sleep 1
done
grep -q '"state": *"done"' "$mnt/.status.json" || { echo "upload did not finish"; exit 1; }

echo "== verifying"
local_hash=$("$bin" quickxor "$work/big.bin")
remote_hash=$(curl -s "$(val admin_url)/items" | grep -o '"path": *"Uploads/Docs/big.bin"[^}]*' | grep -o '"quickXorHash": *"[^"]*"' | sed 's/.*: *"\(.*\)"/\1/')
echo "local quickXorHash:      $local_hash"
echo "SharePoint quickXorHash: $remote_hash"
[ "$local_hash" = "$remote_hash" ] || { echo "HASH MISMATCH"; exit 1; }
cmp "$work/big.bin" "$mnt/Docs/big.bin" && echo "read-back through the mount: identical"
echo "== unmounting"
fusermount3 -u "$mnt"
wait "$mount_pid"; mount_pid=""
echo "demo OK"
