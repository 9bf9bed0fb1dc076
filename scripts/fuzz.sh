#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time with a corpus seeded from the committed fixtures.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 60 s, every target)
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`); both come from
# the package registries. Crashes land in fuzz/artifacts/<target>/ (git-ignored) and fail the run;
# each target's full libFuzzer log is fuzz/artifacts/logs/<target>.log. The summary line per
# target gives libFuzzer's final counts: runs executed, coverage (cov), features (ft), corpus.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"
SECS="${1:-60}"; shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(kite upstox angel dhan json capture ws)
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz not installed: cargo install cargo-fuzz --locked" >&2; exit 2; }
# cargo-fuzz builds C dependencies with AddressSanitizer too (the cc crate follows
# -Zsanitizer=address). librdkafka's configure then probes for the ASan-built libzstd with a test
# program linked without the ASan runtime, the probe fails and the build stops ("libzstd
# (WITH_ZSTD) failed"). Linking that probe with the runtime fixes it; the fuzz binaries are linked
# by rustc, which adds the runtime itself.
export LDFLAGS="${LDFLAGS:+$LDFLAGS }-fsanitize=address"
bash seed.sh
mkdir -p artifacts/logs
status=0
for t in "${TARGETS[@]}"; do
  log="artifacts/logs/$t.log"
  echo "== fuzz $t for ${SECS}s (log: fuzz/$log)"
  if ! cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$SECS" -rss_limit_mb=2048 \
      -print_final_stats=1 >"$log" 2>&1; then
    echo "!! $t found a crash (see fuzz/artifacts/$t and fuzz/$log)"; tail -30 "$log"; status=1
    continue
  fi
  # libFuzzer's last status line and final stats.
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)
  runs=$(grep -E '^stat::number_of_executed_units:' "$log" | awk '{print $2}' || true)
  echo "   $t: runs ${runs:-?}; ${done_line:-no DONE line, see the log}"
done
exit $status
