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

# Debian packages, installed as root; the package lists are refreshed once per run.
APT_UPDATED=0
apt_install() {
  if [ "$APT_UPDATED" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# PostgreSQL: the store and server suites run on SQLite always and on PostgreSQL when
# RINGFENCE_TEST_POSTGRES is set. We start a throwaway cluster on a private port and remove it
# on exit, unless the caller already points at one.
start_postgres() {
  if [ -n "${RINGFENCE_TEST_POSTGRES:-}" ]; then
    return
  fi
  if ! ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
      log "installing postgresql"
      apt_install postgresql
    else
      echo "note: PostgreSQL is not installed and we cannot install it; store tests cover SQLite only"
      return
    fi
  fi
  local bin dir port=54329 run=()
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  dir=$(mktemp -d /tmp/ringfence-pg.XXXXXX)
  if [ "$(id -u)" -eq 0 ]; then
    # PostgreSQL refuses to run as root.
    chown postgres: "$dir"
    run=(runuser -u postgres --)
  fi
  "${run[@]}" "$bin/initdb" -D "$dir/data" -A trust -U postgres >"$dir/initdb.log"
  "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
  CLEANUP+=("${run[*]} $bin/pg_ctl -D $dir/data -m immediate stop >/dev/null; rm -rf $dir")
  export RINGFENCE_TEST_POSTGRES="postgres://postgres@127.0.0.1:$port/postgres"
  echo "PostgreSQL test server at $RINGFENCE_TEST_POSTGRES"
}
# A real browser for the dashboard tests: Debian's chromium, and chromium-driver (WebDriver)
# for the tests that press the page's buttons.
install_chromium() {
  if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    return
  fi
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    log "installing chromium and chromium-driver"
    apt_install chromium chromium-driver
  else
    echo "note: chromium or chromium-driver is not installed and we cannot install them; the dashboard tests will say they skipped"
  fi
}

# The BPF sensor's compiler and headers (crates/bpf-sensor/build.rs). As root the live BPF tests
# must run, so a build without them is an error (RINGFENCE_REQUIRE_BPF=1) rather than a sensor
# quietly built without BPF support.
install_bpf_tools() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "note: not root; the BPF sensor builds only if clang, libbpf-dev and bpftool are installed"
    return
  fi
  if ! command -v clang >/dev/null || ! command -v bpftool >/dev/null || [ ! -e /usr/include/bpf/bpf_helpers.h ]; then
    log "installing clang, llvm, libbpf-dev and bpftool"
    apt_install clang llvm libbpf-dev bpftool
  fi
  export RINGFENCE_REQUIRE_BPF=1
}

# A real syslog receiver over TLS for the alert sink tests: Debian's rsyslog with its GnuTLS
# driver, started by the test itself on loopback.
install_rsyslog() {
  if command -v rsyslogd >/dev/null && ls /usr/lib/*/rsyslog/lmnsd_gtls.so >/dev/null 2>&1; then
    return
  fi
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    log "installing rsyslog and rsyslog-gnutls"
    apt_install --no-install-recommends rsyslog rsyslog-gnutls
  else
    echo "note: rsyslog is not installed and we cannot install it; the syslog sink test will say it skipped"
  fi
}

# The README's first command on a toolchain without the wasm target (removed, then added back
# by the build itself): a clear error offline, a working build online.
log "a toolchain without the wasm target"
bash scripts/test-fresh-toolchain.sh

# python3 writes through a shared mapping in the kernel exec cache's live test (Rust would need
# `unsafe` for mmap outside crates/sys).
install_python() {
  if ! command -v python3 >/dev/null && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    log "installing python3"
    apt_install python3
  fi
}

log "services"
start_postgres
install_chromium
install_bpf_tools
install_rsyslog
install_python

log "tests"
# Skips are loud: every skipped test says why and appends a line here (crates/testkit). As root
# this script has installed and started everything the suites need, so a skip there is a
# failure (RINGFENCE_REQUIRE_ALL=1), unless RINGFENCE_ALLOW_SKIPS=1 says otherwise.
export RINGFENCE_SKIP_LOG
RINGFENCE_SKIP_LOG=$(mktemp /tmp/ringfence-skips.XXXXXX)
CLEANUP+=("rm -f $RINGFENCE_SKIP_LOG")
if [ "$(id -u)" -eq 0 ] && [ "${RINGFENCE_ALLOW_SKIPS:-0}" != 1 ]; then
  export RINGFENCE_REQUIRE_ALL=1
  echo "root with PostgreSQL and Chromium: every live, PostgreSQL and browser test must run"
else
  echo "note: not root; live fanotify, process-connector, mount and browser tests will say why they skipped"
fi
# A test process killed from outside (SIGKILL with no panic, as by the kernel's OOM killer) leaves
# no trace in cargo's output: on a failure, say what the machine saw.
machine_state() {
  echo "==> the machine after the failure"
  free -m || true
  ps -eo pid,ppid,rss,etime,args --sort=-rss | head -n 15 || true
  dmesg 2>/dev/null | tail -n 30 || true
}
cargo test --workspace --locked --all-targets --no-fail-fast || { machine_state; exit 1; }
cargo test --workspace --locked --doc
skips=$(wc -l <"$RINGFENCE_SKIP_LOG")
echo "skipped tests: $skips"
sed 's/^/  /' "$RINGFENCE_SKIP_LOG"

# A short run of every fuzz target (docs/fuzzing.md); RINGFENCE_FUZZ_SECONDS runs longer.
log "fuzzing"
bash scripts/fuzz.sh "${RINGFENCE_FUZZ_SECONDS:-5}"

# The .deb packages, installed, removed and purged in a throwaway root (docs/packaging.md),
# made from the binary the tests above have built.
log "packages"
bash scripts/test-package.sh --no-build

log "all tests passed"
