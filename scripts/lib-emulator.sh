# Shared by the measurement scripts: build, start the emulator, mount it, wait, stop. Source it
# after setting $bin (or call build_release). Everything lives in $work, removed on exit.
work=$(mktemp -d /tmp/shareuplift-bench.XXXXXX)
mnt=$work/mnt
mkdir -p "$mnt"
emu_pid=""; mount_pid=""
_cleanup() {
  if mountpoint -q "$mnt" 2>/dev/null; then fusermount3 -uz "$mnt" || true; fi
  [ -n "$mount_pid" ] && kill "$mount_pid" 2>/dev/null || true
  [ -n "$emu_pid" ] && kill "$emu_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap _cleanup EXIT

# build_release: build the release binary with cargo's progress shown (a newcomer's first build
# takes minutes and should not look like a hang), and point $bin at it.
build_release() {
  echo "== building shareuplift (release; the first build takes a few minutes, later ones seconds)"
  cargo build --release
  bin=$PWD/target/release/shareuplift
}

val() { grep -o "\"$1\": *\"[^\"]*\"" "$work/ready.json" | head -1 | sed 's/^[^:]*: *"\(.*\)"$/\1/'; }

# start_emulator FAULTS_JSON [FIELD_JSON]   ($EMU_ARGS: more emulator flags, e.g. --field-profile field)
# FIELD_JSON sets field conditions (src/emulator/field.rs), e.g.
#   '{"latency_ms": 50, "latency_jitter_ms": 10, "budget_per_sec": 20, "budget_burst": 20,
#     "delta_disabled": false, "delta_disabled_status": 501, "allow_parallel_sessions": false}'
# At run time: curl -X POST --data '{"latency_ms":0}' "$(val admin_url)/field" (merges keys);
# counters: curl "$(val admin_url)/stats" (by_kind, budget_refused, requests_inside_retry_after,
# open_sessions, open_session_paths); POST .../reset_stats; POST .../delta/expire;
# GET .../sessions; PUT/DELETE .../files/Documents/PATH; PUT .../folders/Documents/PATH.
start_emulator() {
  rm -rf "$work/emu" "$work/ready.json"
  "$bin" emulator --data "$work/emu" --ready-file "$work/ready.json" --faults "$1" \
    --field "${2:-{\}}" ${EMU_ARGS:-} 2>"$work/emulator.log" &
  emu_pid=$!
  for _ in $(seq 100); do [ -s "$work/ready.json" ] && return 0; sleep 0.1; done
  echo "emulator did not start"; cat "$work/emulator.log"; exit 1
}

stop_emulator() { kill "$emu_pid" 2>/dev/null || true; wait "$emu_pid" 2>/dev/null || true; emu_pid=""; }

# mount_emulator EXTRA_TOML [WRAPPER...]
mount_emulator() {
  local extra=$1; shift
  [ -n "${keep_spool:-}" ] || rm -rf "$work/spool"
  cat > "$work/config.toml" <<TOML
site_url = "$(val site_url)"
folder_url = "$(val folder_url)"
username = "$(val username)"
client_id = "$(val client_id)"
tenant = "$(val tenant)"
graph_url = "$(val graph_url)"
authority_url = "$(val authority_url)"
spool_dir = "$work/spool"
$extra
TOML
  SHAREUPLIFT_PASSWORD="$(val password)" "$@" "$bin" mount --config "$work/config.toml" "$mnt" 2>"$work/mount.log" &
  mount_pid=$!
  # MOUNT_WAIT_SECS: how long start-up may take (longer under injected stalls).
  for _ in $(seq $(( ${MOUNT_WAIT_SECS:-10} * 10 ))); do mountpoint -q "$mnt" && return 0; sleep 0.1; done
  echo "mount failed"; cat "$work/mount.log"; exit 1
}

wait_all_done() {
  for _ in $(seq 3000); do
    if ! grep -q '"state": *"\(queued\|uploading\|retrying\)"' "$mnt/.status.json"; then
      if grep -q '"state": *"failed"' "$mnt/.status.json"; then echo "an upload failed:"; cat "$mnt/.status"; exit 1; fi
      return 0
    fi
    sleep 0.2
  done
  echo "uploads did not finish"; cat "$mnt/.status"; exit 1
}

stop_mount() { fusermount3 -u "$mnt"; wait "$mount_pid" || true; mount_pid=""; }
