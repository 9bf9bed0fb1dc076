#!/usr/bin/env bash
# Seeds the cargo-fuzz corpora (fuzz/corpus is git-ignored) from the committed parser fixtures.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p corpus/kite corpus/upstox corpus/capture
cp ../tests/fixtures/kite/*.bin ../tests/fixtures/kite/text_*.json corpus/kite/
cp ../tests/fixtures/upstox/*.bin corpus/upstox/
cp ../tests/fixtures/capture/*.l1cap corpus/capture/ 2>/dev/null || true
echo "seeded: $(ls corpus/kite | wc -l) kite, $(ls corpus/upstox | wc -l) upstox, $(ls corpus/capture | wc -l) capture"
