#!/usr/bin/env bash
# The first command on a machine whose Rust toolchain lacks the wasm target: the build must add
# the target itself, or — when it cannot (no network) — stop with one clear sentence, never a
# panic and a backtrace. Run by scripts/test.sh; it removes the target from the pinned
# toolchain, so it must not run beside another build.
#
#   bash scripts/test-fresh-toolchain.sh
set -euo pipefail
cd "$(dirname "$0")/.."

target=wasm32-wasip2
toolchain=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
work=$(mktemp -d /tmp/ringfence-fresh-toolchain.XXXXXX)
# Whatever happens, the toolchain leaves with its target.
trap 'rustup target add --toolchain "$toolchain" "$target" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

build() {
  CARGO_TARGET_DIR="$work/target" cargo build --locked -p ringfence-bundled-engines "$@"
}
# The build script must run from scratch (hence a target directory of its own), but the guests it
# builds need not: a copy of the engines already built (by .ci/run's clippy, which runs build
# scripts) saves compiling them again, and the script still checks for the target first.
main_target=${CARGO_TARGET_DIR:-target}
if [ -d "$main_target/engines-build" ]; then
  mkdir -p "$work/target"
  cp -a "$main_target/engines-build" "$work/target/"
fi

echo "== removing $target from $toolchain"
rustup target remove --toolchain "$toolchain" "$target" >/dev/null

echo "== without network: a clear error"
if RUSTUP_DIST_SERVER=http://127.0.0.1:9 RUSTUP_UPDATE_ROOT=http://127.0.0.1:9 build >"$work/offline.log" 2>&1; then
  echo "FAIL: the build succeeded without the target and without network" >&2
  exit 1
fi
if grep -q "panicked" "$work/offline.log"; then
  echo "FAIL: the build panicked instead of explaining:" >&2
  cat "$work/offline.log" >&2
  exit 1
fi
if ! grep -q "rustup target add $target" "$work/offline.log"; then
  echo "FAIL: the error does not say how to add the target:" >&2
  cat "$work/offline.log" >&2
  exit 1
fi
grep -m1 "need the $target target" "$work/offline.log" | sed 's/^/   says: /'

echo "== with network: the build adds the target and succeeds"
build >"$work/online.log" 2>&1 || { cat "$work/online.log" >&2; exit 1; }
rustup target list --toolchain "$toolchain" --installed | grep -qx "$target" || {
  echo "FAIL: the build succeeded but $target is not installed" >&2
  exit 1
}
echo "fresh toolchain: ok"
