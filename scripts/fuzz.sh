#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time with a corpus seeded from the committed fixtures.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 60 s, every target)
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`); both come from
# the package registries. Crashes land in fuzz/artifacts/<target>/ (git-ignored) and fail the run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"
SECS="${1:-60}"; shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(kite upstox angel dhan json capture)
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz not installed: cargo install cargo-fuzz --locked" >&2; exit 2; }
bash seed.sh
mkdir -p corpus/angel corpus/dhan corpus/json
status=0
for t in "${TARGETS[@]}"; do
  echo "== fuzz $t for ${SECS}s"
  if ! cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$SECS" -rss_limit_mb=2048 2>&1 | tail -4; then
    echo "!! $t found a crash (see fuzz/artifacts/$t)"; status=1
  fi
done
exit $status
