#!/usr/bin/env bash
# Installs the Debian packages into a throwaway root and checks what they put there, then removes
# and purges them. Run by scripts/test.sh; see docs/packaging.md.
#
#   bash scripts/test-package.sh [--no-build]
#
# The root is an overlay with this machine's / as the read-only lower layer and an empty
# temporary upper layer, mounted in a private mount namespace (unshare -m) and entered with
# chroot: dpkg, useradd and systemctl inside it write only to the upper layer, which is deleted
# afterwards, so the host's packages, users and units are never touched. It needs root and
# overlay mounts; without them it says why and skips.
#
# It packages the dev-profile binary (package.sh --profile dev): the packaging is the same for
# a release build, only the binary differs. --no-build takes the one `cargo test` has just built.
set -euo pipefail
cd "$(dirname "$0")/.."

skip() {
  echo "package install test skipped: $*"
  exit 0
}

if [ "${1:-}" != "--in-namespace" ]; then
  [ "$(id -u)" -eq 0 ] || skip "needs root (overlay mount, chroot, dpkg -i)"
  for tool in unshare chroot dpkg dpkg-deb; do
    command -v "$tool" >/dev/null || skip "$tool is not installed"
  done
  bash scripts/package.sh --profile dev "$@"
  tmp=$(mktemp -d /tmp/ringfence-package-test.XXXXXX)
  # The namespace, and every mount in it, ends with this process; only then is the upper layer
  # (all that the installs wrote) deleted.
  status=0
  unshare --mount --propagation private bash "$0" --in-namespace "$tmp" "${CARGO_TARGET_DIR:-target}/debian" || status=$?
  rm -rf "$tmp"
  exit "$status"
fi

# --- inside the private mount namespace ---------------------------------------------------
tmp=$2
debs=$(realpath "$3")
root=$tmp/root
mkdir -p "$tmp/upper" "$tmp/work" "$root"
if ! error=$(mount -t overlay overlay -o "lowerdir=/,upperdir=$tmp/upper,workdir=$tmp/work" "$root" 2>&1); then
  skip "overlay mounts are not permitted here ($error)"
fi
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
# An empty /run: no /run/systemd/system, so the maintainer scripts see a system that systemd
# does not run (as in an image build) and start nothing; an empty /tmp for the packages.
mount -t tmpfs tmpfs "$root/run"
mount -t tmpfs tmpfs "$root/tmp"

passed=0
failed=0
check() {
  local what=$1
  shift
  if "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAILED: $what"
  fi
}
# Commands inside the root get a clean environment; dpkg wants the sbin directories on PATH.
# No standard input: nothing may wait for an answer.
in_root() {
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C \
    DEBIAN_FRONTEND=noninteractive chroot "$root" "$@" </dev/null
}
in_passwd() { grep -q '^ringfence:' "$root/etc/passwd"; }
# Names resolved by the root's /etc/passwd: the user exists only there.
owned_by_ringfence() { [ "$(in_root stat -c %U:%G /var/lib/ringfence/server)" = ringfence:ringfence ]; }
mode_is() { [ "$(stat -c %a "$root$2")" = "$1" ]; }
enabled() { [ -L "$root/etc/systemd/system/multi-user.target.wants/$1" ]; }
# shellcheck disable=SC2016 # ${...} is dpkg-query's format, not the shell's
installed() { in_root dpkg-query -W -f '${Status}\n' "$1" 2>/dev/null | grep -q ' installed$'; }
not_known_to_dpkg() { ! in_root dpkg-query -W "$1" >/dev/null 2>&1; }
not_in_passwd() { ! grep -q '^ringfence:' "$1/etc/passwd"; }
not_in_group() { ! grep -q '^ringfence:' "$root/etc/group"; }
# shellcheck disable=SC2016
conffiles() { [ "$(in_root dpkg-query -W -f '${Conffiles}\n' ringfence-agent ringfence-server | grep -c ' /etc/default/ringfence')" -eq 2 ]; }
runs() { [ "$(in_root ringfence --version)" = "ringfence ${version%-*}" ]; }
no_ringfence_files() { [ -z "$(find "$root/usr" "$root/etc" "$root/var/lib" -name '*ringfence*' -print -quit)" ]; }

# The lower layer is this machine: a host that has ringfence installed would not give a fresh
# root (and a stray config would make dpkg ask about it).
for file in /usr/bin/ringfence /etc/default/ringfence /etc/default/ringfence-server; do
  if [ -e "$root$file" ]; then
    echo "FAILED: this machine has $file already; the test root would not be fresh"
    exit 1
  fi
done
if in_passwd; then
  echo "FAILED: this machine has a ringfence user already; the test root would not be fresh"
  exit 1
fi

version=$(dpkg-deb -f "$debs"/ringfence_*_amd64.deb Version)
mkdir "$root/tmp/debs"
cp "$debs"/ringfence{,-agent,-server}_"${version}"_*.deb "$root/tmp/debs/"
agent_unit=/usr/lib/systemd/system/ringfence-guard.service
server_unit=/usr/lib/systemd/system/ringfence-server.service

echo "installing the packages in $root"
in_root sh -c 'dpkg -i /tmp/debs/*.deb' >"$tmp/install.log" 2>&1 || {
  cat "$tmp/install.log"
  echo "FAILED: dpkg -i"
  exit 1
}
for package in ringfence ringfence-agent ringfence-server; do
  check "$package is installed" installed "$package"
done
for file in /usr/bin/ringfence "$agent_unit" "$server_unit" \
  /usr/share/man/man1/ringfence.1.gz /usr/share/man/man1/ringfence-agent.1.gz \
  /usr/share/man/man1/ringfence-guard.1.gz /usr/share/man/man1/ringfence-server.1.gz \
  /usr/share/bash-completion/completions/ringfence /usr/share/zsh/vendor-completions/_ringfence \
  /usr/share/fish/vendor_completions.d/ringfence.fish \
  /etc/default/ringfence /etc/default/ringfence-server; do
  check "$file is installed" test -f "$root$file"
done
check "/etc/default/ringfence is root-only (it may hold an enrollment token)" mode_is 600 /etc/default/ringfence
check "the default configs are conffiles" conffiles
check "the ringfence user is in the root's /etc/passwd" in_passwd
check "the ringfence user is not in the host's /etc/passwd" not_in_passwd ""
check "/var/lib/ringfence exists" test -d "$root/var/lib/ringfence"
check "/var/lib/ringfence/server belongs to ringfence" owned_by_ringfence
check "/var/lib/ringfence/server is private" mode_is 750 /var/lib/ringfence/server
check "the server unit runs as ringfence" grep -qx 'User=ringfence' "$root$server_unit"
if in_root sh -c 'command -v systemctl' >/dev/null; then
  check "ringfence-guard.service is enabled" enabled ringfence-guard.service
  check "ringfence-server.service is enabled" enabled ringfence-server.service
fi
if in_root sh -c 'command -v systemd-analyze' >/dev/null; then
  check "the units pass systemd-analyze verify" in_root systemd-analyze verify "$agent_unit" "$server_unit"
else
  check "the units have an ExecStart of the installed binary" \
    grep -q '^ExecStart=/usr/bin/ringfence ' "$root$agent_unit" "$root$server_unit"
fi
check "ringfence --version runs in the root" runs
check "the host has no /usr/bin/ringfence" test ! -e /usr/bin/ringfence

# A second install of the same version runs every maintainer script again (configure with the
# installed version): they must be idempotent.
check "reinstalling is idempotent" in_root sh -c 'dpkg -i /tmp/debs/*.deb >/dev/null 2>&1'

# Data the packages must keep on remove and delete on purge.
touch "$root/var/lib/ringfence/server/fleet.db" "$root/var/lib/ringfence/identity.json"
in_root dpkg -r ringfence-agent ringfence-server ringfence >"$tmp/remove.log" 2>&1 || {
  cat "$tmp/remove.log"
  echo "FAILED: dpkg -r"
  exit 1
}
check "remove takes the binary" test ! -e "$root/usr/bin/ringfence"
check "remove takes the units" test ! -e "$root$agent_unit" -a ! -e "$root$server_unit"
check "remove keeps the configs" test -f "$root/etc/default/ringfence" -a -f "$root/etc/default/ringfence-server"
check "remove keeps the user" in_passwd
check "remove keeps the data" test -f "$root/var/lib/ringfence/server/fleet.db" -a -f "$root/var/lib/ringfence/identity.json"

in_root dpkg -P ringfence-agent ringfence-server ringfence >"$tmp/purge.log" 2>&1 || {
  cat "$tmp/purge.log"
  echo "FAILED: dpkg -P"
  exit 1
}
for package in ringfence ringfence-agent ringfence-server; do
  check "purge leaves no trace of $package in dpkg" not_known_to_dpkg "$package"
done
check "purge removes the user" not_in_passwd "$root"
check "purge removes the group" not_in_group
check "purge removes the data" test ! -e "$root/var/lib/ringfence"
check "purge leaves no ringfence file in /usr, /etc or /var/lib" no_ringfence_files

# Once more as on a host that systemd runs: /run/systemd/system exists and a stand-in
# systemctl, first on PATH, records what the maintainer scripts ask of systemd.
mkdir -p "$root/run/systemd/system"
cat >"$root/usr/local/sbin/systemctl" <<'STUB'
#!/bin/sh
echo "$*" >>/tmp/systemctl.log
STUB
chmod 755 "$root/usr/local/sbin/systemctl"
asked() { grep -qx -- "$1" "$root/tmp/systemctl.log"; }
not_asked() { ! asked "$1"; }
in_root sh -c 'dpkg -i /tmp/debs/*.deb' >"$tmp/install.log" 2>&1 || {
  cat "$tmp/install.log"
  echo "FAILED: dpkg -i under systemd"
  exit 1
}
check "install reloads systemd" asked "daemon-reload"
check "install enables the guard" asked "--quiet enable ringfence-guard.service"
check "install enables the server" asked "--quiet enable ringfence-server.service"
check "install starts the server" asked "start ringfence-server.service"
check "install does not start an unconfigured agent" not_asked "start ringfence-guard.service"
check "install says how to configure the agent" grep -q 'set RINGFENCE_SERVER in /etc/default/ringfence' "$tmp/install.log"
# Configured (in the systemd EnvironmentFile form, unquoted with a space), the first configure
# starts the guard.
echo 'RINGFENCE_AGENT_ARGS=--standalone --engine bundled:exec-allowlist' >>"$root/etc/default/ringfence"
in_root /var/lib/dpkg/info/ringfence-agent.postinst configure >/dev/null
check "install starts a configured agent" asked "start ringfence-guard.service"
: >"$root/tmp/systemctl.log"
in_root sh -c 'dpkg -i /tmp/debs/*.deb' >/dev/null 2>&1
check "an upgrade restarts only running units" asked "try-restart ringfence-guard.service"
check "an upgrade keeps the enablement as it is" not_asked "--quiet enable ringfence-server.service"
in_root dpkg -P ringfence-agent ringfence-server ringfence >/dev/null 2>&1
check "remove stops the guard" asked "stop ringfence-guard.service"
check "remove stops the server" asked "stop ringfence-server.service"

echo "package install test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
