#!/usr/bin/env bash
# The test command: installs fuse3/rsync if missing, then runs unit tests and the real-mount
# integration tests (they mount FUSE filesystems against the built-in emulator on 127.0.0.1),
# then the POSIX peer suite (pjdfstest) on a mount, against its expected-failure list.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo test --all-targets -- --test-threads=2
bash scripts/pjdfstest.sh
