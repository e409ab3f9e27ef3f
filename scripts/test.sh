#!/usr/bin/env bash
# The test command: installs fuse3/rsync if missing, then runs unit tests and the real-mount
# integration tests (they mount FUSE filesystems against the built-in emulator on 127.0.0.1),
# then the POSIX peer suite (pjdfstest) on a mount, against its expected-failure list.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo test --all-targets -- --test-threads=2
bash scripts/pjdfstest.sh
# Completions and man pages are generated from the CLI definitions; fail if that breaks.
mkdir -p target/generated/completions target/generated/man
for sh in bash zsh fish; do
  cargo run -q -- completions "$sh" > "target/generated/completions/shareuplift.$sh"
done
cargo run -q -- man --dir target/generated/man
