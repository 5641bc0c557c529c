#!/usr/bin/env bash
# Builds every cargo-fuzz target in fuzz/ once and runs each for a few seconds, so that a parser
# change that panics on garbage fails the test command, not a host. See docs/fuzzing.md for
# the targets and for longer runs.
#
#   bash scripts/fuzz.sh [SECONDS]      # seconds per target, default 5
#
# libFuzzer needs the nightly toolchain and cargo-fuzz; both are installed when missing. When
# they cannot be (no network), fuzzing is skipped with the reason and the script exits 0: that
# is the only failure it forgives. A crash fails the run and names the saved input.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-5}
skip() {
  echo "fuzzing SKIPPED: $*"
  exit 0
}

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "installing the nightly toolchain (libFuzzer's instrumentation needs -Z flags)"
  rustup toolchain install nightly --profile minimal ||
    skip "the nightly toolchain is missing and could not be installed (offline?)"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
    cargo install cargo-fuzz --locked ||
    skip "cargo-fuzz is missing and could not be installed (offline?)"
fi

# A short run (the test command's) spends more time compiling the targets than running them:
# it builds them at opt-level 1, which compiles faster and still runs at a useful fraction of
# full speed. Longer runs get the full optimisation.
opt_level=3
if [ "$seconds" -le 30 ]; then
  opt_level=1
fi

# `--fuzz-dir` goes right after the subcommand: anything after `--` belongs to libFuzzer.
fuzz() {
  local command=$1
  shift
  CARGO_PROFILE_RELEASE_OPT_LEVEL=$opt_level cargo +nightly fuzz "$command" --fuzz-dir fuzz "$@"
}
fuzz build
targets=$(fuzz list)

# New inputs go to fuzz/corpus/<target> (ignored by git and kept between runs); the checked-in
# seeds in fuzz/seeds/<target> are only read. libFuzzer runs on one core, so the targets run
# as many at a time as there are cores; the results are printed in order afterwards.
failed=()
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
run_target() {
  local target=$1
  local status=0
  mkdir -p "fuzz/corpus/$target"
  fuzz run "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$logs/$target.log" 2>&1 || status=$?
  echo "$status" >"$logs/$target.status"
}
jobs_max=$(nproc)
for target in $targets; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do
    wait -n || true
  done
  run_target "$target" &
done
wait
for target in $targets; do
  log="$logs/$target.log"
  if [ "$(cat "$logs/$target.status")" = 0 ]; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log")
    printf '%-20s ok   %10s runs  %8s execs/s  %4ss\n' "$target" "${runs:-?}" "${rate:-?}" "${took:-?}"
  else
    printf '%-20s FAILED\n' "$target"
    # The panic or sanitizer report, then where libFuzzer saved the input.
    grep -E -A3 'panicked at|==ERROR|ERROR: libFuzzer|^SUMMARY' "$log" | head -n 30 || true
    grep 'Test unit written to' "$log" || true
    failed+=("$target")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzzing found crashes in: ${failed[*]}"
  echo "inputs are in fuzz/artifacts/<target>/; reproduce with: cargo +nightly fuzz run <target> <input>"
  exit 1
fi
echo "fuzzing: ${seconds}s per target, no crashes"
