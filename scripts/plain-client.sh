#!/usr/bin/env bash
# A plain upload-session client for comparisons (issue 19): signs in to a running emulator,
# creates an upload session for FILE and PUTs it in FRAG_MIB fragments (rounded down to
# 320 KiB), one after another with curl, from fragment files split beforehand (not timed).
# Prints the upload phase (createUploadSession and the fragment PUTs) in MB/s.
# Usage: scripts/plain-client.sh READY_JSON FILE [FRAG_MIB]   (default 60: 191 x 320 KiB)
set -euo pipefail
ready=$1; file=$2; frag_mib=${3:-60}
j() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$ready" "$1"; }
unit=$(( 320 * 1024 ))
frag=$(( frag_mib * 1024 * 1024 / unit * unit ))
[ "$frag" -lt $(( 60 * 1024 * 1024 )) ] || frag=$(( frag - unit ))
size=$(stat -c %s "$file")
tmp=$(mktemp -d /tmp/plain-client.XXXXXX); trap 'rm -rf "$tmp"' EXIT
split -b "$frag" -d -a 4 "$file" "$tmp/part."

token=$(curl -s -X POST "$(j authority_url)/$(j tenant)/oauth2/v2.0/token" \
  -d grant_type=password -d client_id="$(j client_id)" -d username="$(j username)" \
  --data-urlencode password="$(j password)" \
  --data-urlencode "scope=https://graph.microsoft.com/.default offline_access" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
g=$(j graph_url); auth="Authorization: Bearer $token"
site=$(curl -s -H "$auth" "$g/sites/$(j site_url | sed 's#^https://\([^/]*\)/#\1:/#')" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
drive=$(curl -s -H "$auth" "$g/sites/$site/drives" |
  python3 -c 'import json,sys; print([d["id"] for d in json.load(sys.stdin)["value"] if d["name"]=="Documents"][0])')
name="plain-$(date +%s%N).bin"
t0=$(date +%s%N); off=0
url=$(curl -s -X POST -H "$auth" -H 'Content-Type: application/json' \
  -d '{"item": {"@microsoft.graph.conflictBehavior": "replace"}}' \
  "$g/drives/$drive/root:/Uploads/$name:/createUploadSession" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["uploadUrl"])')

for part in "$tmp"/part.*; do
  len=$(stat -c %s "$part")
  code=$(curl -s -o "$tmp/answer" -w '%{http_code}' -T "$part" -X PUT \
    -H "Content-Range: bytes $off-$(( off + len - 1 ))/$size" "$url")
  case $code in 200|201|202) ;; *) echo "fragment at $off: $code $(cat "$tmp/answer")"; exit 1 ;; esac
  off=$(( off + len ))
done
t1=$(date +%s%N)
ms=$(( (t1 - t0) / 1000000 ))
awk -v b="$size" -v m="$ms" -v f="$frag" 'BEGIN { printf "plain client, %d-byte fragments: %d bytes in %.2f s, upload phase %.0f MB/s\n", f, b, m / 1000, b / 1000 / (m > 0 ? m : 1) }'
