#!/usr/bin/env bash
# The one command that passes every test on a fresh clone: installs what the tests need,
# starts the services they use, runs the whole suite, and cleans up after itself.
#
#   bash scripts/test.sh
#
# Live-kernel tests (fanotify, process connector) run when this is run as root and say
# clearly why they were skipped otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

# The toolchain and the wasm target come from rust-toolchain.toml; asking rustup to show the
# active toolchain installs both on a fresh machine.
log "toolchain"
rustup show active-toolchain >/dev/null
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
rustc --version

cleanup() {
  local status=$?
  # Nothing left behind: temporary services register their stop commands here.
  for stop in "${CLEANUP[@]:-}"; do
    [ -n "$stop" ] && eval "$stop" || true
  done
  exit "$status"
}
CLEANUP=()
trap cleanup EXIT INT TERM

log "tests"
if [ "$(id -u)" -ne 0 ]; then
  echo "note: not root; live fanotify and process-connector tests will report that they were skipped"
fi
cargo test --workspace --locked --all-targets
cargo test --workspace --locked --doc

log "all tests passed"
