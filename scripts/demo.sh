#!/usr/bin/env bash
# The main job, end to end on the built-in emulator: start a local SharePoint, mount it, copy a
# generated 200 MiB file with cp, watch .status until SharePoint has it, verify the hash,
# unmount. Installs fuse3 if missing. Usage: scripts/demo.sh [SIZE_MIB]
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-200}
bash scripts/install-deps.sh
source scripts/lib-emulator.sh
build_release

echo "== starting the local SharePoint emulator (100 MB/s link)"
start_emulator '{"bandwidth_bytes_per_sec": 100000000}'
echo "== mounting $(val folder_url) at $mnt"
mount_emulator 'chunk_size = "10MiB"'

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
stop_mount
echo "demo OK"
