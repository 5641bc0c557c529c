#!/usr/bin/env bash
# RustSec advisories for both workspaces (deny.toml, [advisories]): fails on any known
# vulnerability in a dependency.
#
#   bash scripts/advisories.sh
#
# The advisory database lives on GitHub. Where GitHub cannot be reached (an offline network)
# this says so loudly and checks nothing, instead of failing the build on the network, unless
# RINGFENCE_REQUIRE_ADVISORIES=1 (for release builds); licences, bans and sources are checked
# offline by .ci/run either way. With RINGFENCE_ADVISORY_DB set
# to a checkout of github.com/rustsec/advisory-db, that checkout is used and nothing is fetched.
set -euo pipefail
cd "$(dirname "$0")/.."

manifests=(Cargo.toml engines/Cargo.toml)

if [ -n "${RINGFENCE_ADVISORY_DB:-}" ]; then
  # cargo-deny looks for the database under db-path, in a directory named after its URL.
  db=$(mktemp -d)
  trap 'rm -rf "$db"' EXIT
  ln -s "$(realpath "$RINGFENCE_ADVISORY_DB")" "$db/advisory-db-3157b0e258782691"
  config="$db/deny.toml"
  sed "s|^\[advisories\]\$|[advisories]\ndb-path = \"$db\"|" deny.toml >"$config"
  echo "advisories: database $(git -C "$RINGFENCE_ADVISORY_DB" log -1 --format='%h of %cs' 2>/dev/null || echo "at $RINGFENCE_ADVISORY_DB")"
  for manifest in "${manifests[@]}"; do
    cargo deny --offline --config "$config" --manifest-path "$manifest" check advisories
  done
  exit 0
fi

# Only an unreachable database is "not checked"; once it is reachable, any failure to fetch or
# read it (a stale lock, a corrupt cache) fails like a vulnerability would.
if ! timeout 60 git ls-remote --exit-code https://github.com/rustsec/advisory-db HEAD >/dev/null 2>&1; then
  if [ "${RINGFENCE_REQUIRE_ADVISORIES:-}" = 1 ]; then
    echo "advisories: github.com/rustsec/advisory-db cannot be reached, and RINGFENCE_REQUIRE_ADVISORIES=1" >&2
    exit 1
  fi
  echo "advisories: NOT CHECKED: github.com/rustsec/advisory-db cannot be reached from here (RINGFENCE_REQUIRE_ADVISORIES=1 makes this fatal)"
  exit 0
fi
cargo deny fetch db
for manifest in "${manifests[@]}"; do
  cargo deny --offline --manifest-path "$manifest" check advisories
done
