#!/usr/bin/env bash
# The POSIX peer suite on the mount: installs pjdfstest 0.2.2 if missing, builds the debug
# binary, starts the emulator, mounts it, runs the suite as root in MOUNT/pjd, and compares
# every case's result with tests/pjdfstest-expected.txt (one `case  # reason` per line: only
# cases that need what SharePoint cannot hold — symlinks, hard links, special files, POSIX
# modes and owners). A case that fails but is not listed, or is listed but passes, is reported
# and fails the script. Usage: scripts/pjdfstest.sh [PATTERN...]   (run as root)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
expected=$root/tests/pjdfstest-expected.txt
export PATH="$HOME/.cargo/bin:$PATH"
command -v pjdfstest >/dev/null || cargo install --locked pjdfstest@0.2.2
# pjdfstest switches to two dummy users for its unprivileged cases.
getent group nogroup >/dev/null || groupadd nogroup
id tests >/dev/null 2>&1 || useradd --no-create-home --user-group tests
cargo build --bin shareuplift
bin=$root/target/debug/shareuplift
source scripts/lib-emulator.sh
start_emulator '{}'
mount_emulator ''
cat > "$work/pjdfstest.toml" <<'TOML'
[features]
utimensat = {}
utime_now = {}
rename_ctime = {}
[settings]
naptime = 0.01
allow_remount = false
[dummy_auth]
entries = [["nobody", "nogroup"], ["tests", "tests"]]
TOML
mkdir "$mnt/pjd"
(cd "$mnt/pjd" && NO_COLOR=1 CLICOLOR=0 timeout 900 pjdfstest -c "$work/pjdfstest.toml" \
  -p "$mnt/pjd" "$@" >"$work/pjd.out" 2>&1) || true
# One "case result" line per case; strip colour codes should the tool emit them anyway.
sed 's/\x1b\[[0-9;]*m//g' "$work/pjd.out" |
  awk '/^[a-z_0-9]+::[^ \t]+[ \t]+(ok|FAILED|skipped)$/ {print $1, $NF}' | sort -u >"$work/results"
total=$(wc -l <"$work/results")
passed=$(grep -c ' ok$' "$work/results" || true)
failed=$(grep -c ' FAILED$' "$work/results" || true)
skipped=$(grep -c ' skipped$' "$work/results" || true)
if [ "$total" -eq 0 ]; then echo "pjdfstest produced no results:"; tail -50 "$work/pjd.out"; exit 1; fi
sed 's/#.*//' "$expected" | awk 'NF {print $1}' | sort -u >"$work/expected"
bad=0
while read -r name res; do
  listed=0; grep -qxF "$name" "$work/expected" && listed=1
  if [ "$res" = FAILED ] && [ $listed = 0 ]; then
    echo "UNEXPECTED FAILURE: $name"; bad=1
    awk -v n="$name" '$1 == n {p=1; next} p && /^[a-z_0-9]+::/ {exit} p' \
      <(sed 's/\x1b\[[0-9;]*m//g' "$work/pjd.out") | head -8
  elif [ "$res" = ok ] && [ $listed = 1 ]; then
    echo "UNEXPECTED PASS (remove from the list): $name"; bad=1
  fi
done <"$work/results"
[ -n "${PJD_KEEP:-}" ] && cp "$work/results" "$PJD_KEEP"
echo "pjdfstest: $passed of $total cases pass ($failed failed, $skipped skipped)"
[ $bad = 0 ] || { echo "pjdfstest: results differ from $expected"; exit 1; }
echo "pjdfstest OK: every failure is an expected one"
