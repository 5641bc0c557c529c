#!/usr/bin/env bash
# Builds the Debian packages into target/debian/ (see docs/packaging.md):
#   ringfence         the binary, man pages, bash/zsh/fish completions
#   ringfence-agent   the guard unit and /etc/default/ringfence
#   ringfence-server  the server unit, /etc/default/ringfence-server and the `ringfence` user
#
#   bash scripts/package.sh [--profile release|dev] [--no-build]
#
# release (the default) is what to ship. dev packages the unoptimised binary, so
# scripts/test-package.sh can test the packaging without a release build. --no-build packages the
# binary already in target/<profile>/ (scripts/test.sh has just built it with `cargo test`;
# `cargo build -p ringfence` would resolve features differently and build it again).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
build=yes
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=${2:?--profile needs release or dev}; shift 2 ;;
    --profile=*) profile=${1#*=}; shift ;;
    --no-build) build=no; shift ;;
    *) echo "usage: $0 [--profile release|dev] [--no-build]" >&2; exit 2 ;;
  esac
done
case "$profile" in
  release) profile_dir=release; compression=() ;;
  # The dev binary is several times larger; xz at its default level would take minutes.
  dev) profile_dir=debug; compression=(--fast) ;;
  *) echo "unknown profile '$profile' (release or dev)" >&2; exit 2 ;;
esac
target=${CARGO_TARGET_DIR:-target}

if ! cargo deb --version >/dev/null 2>&1; then
  echo "installing cargo-deb"
  cargo install cargo-deb --locked --version '~3.8' --quiet
fi

if [ "$build" = yes ]; then
  cargo build --locked --profile "$profile" -p ringfence
fi
binary="$target/$profile_dir/ringfence"
[ -x "$binary" ] || { echo "$binary is missing: build it, or leave out --no-build" >&2; exit 1; }

# Man pages and completions come from the binary's own CLI definition. They go next to the
# binary, where the `target/release/ringfence-assets/...` entries of the package metadata point
# (cargo-deb maps `target/release/` to the profile's directory).
assets="$target/$profile_dir/ringfence-assets"
rm -rf "$assets"
"$binary" generate-assets "$assets"
gzip -9n "$assets"/man/*.1

# The agent and server packages depend on exactly this version of the binary's package; the
# version in their metadata is written by hand, so check it here rather than ship a mismatch.
version="$("$binary" --version | awk '{print $2}')-1"
if ! grep -qF "depends = \"ringfence (= $version)\"" crates/ringfence/Cargo.toml; then
  echo "crates/ringfence/Cargo.toml: the agent and server variants must depend on ringfence (= $version)" >&2
  exit 1
fi

# --strip: the release profile keeps line tables (for backtraces in development), which would
# make the installed binary five times larger; cargo-deb keeps what the profile asks for.
mkdir -p "$target/debian"
for variant in "" agent server; do
  cargo deb --quiet --no-build --strip --profile "$profile" -p ringfence \
    ${variant:+--variant "$variant"} "${compression[@]}" --deb-version "$version" \
    --output "$target/debian/"
done
ls -l "$target"/debian/ringfence{,-agent,-server}_"$version"_*.deb

# Supply chain: checksums of every package, and with RINGFENCE_RELEASE_KEY (a key from
# `ringfence release keygen`) a detached signature of each, checked with
# `ringfence release verify-binary --pub release.pub <package>.deb`.
(cd "$target/debian" && sha256sum ringfence{,-agent,-server}_"$version"_*.deb > SHA256SUMS)
if [ -n "${RINGFENCE_RELEASE_KEY:-}" ]; then
  for deb in "$target"/debian/ringfence{,-agent,-server}_"$version"_*.deb; do
    "$binary" release sign-binary --key "$RINGFENCE_RELEASE_KEY" "$deb" >/dev/null
  done
  echo "signed with $RINGFENCE_RELEASE_KEY"
fi
cat "$target/debian/SHA256SUMS"
