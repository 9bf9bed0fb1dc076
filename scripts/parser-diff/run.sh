#!/usr/bin/env bash
# Differential check of our Kite and Upstox parsers against the vendors' own decoders.
# Usage: scripts/parser-diff/run.sh [N_FRAMES_PER_VENDOR] [SEED]
# Needs: pip install kiteconnect upstox-python-sdk protobuf
set -euo pipefail
cd "$(dirname "$0")/../.."
n="${1:-20000}"
seed="${2:-42}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
cargo build --quiet --example parser_frames
bin="${CARGO_TARGET_DIR:-target}/debug/examples/parser_frames"
status=0
for vendor in kite upstox; do
  "$bin" random "$vendor" "$n" "$seed" "$out/$vendor.cap" "$out/$vendor.jsonl"
  python3 scripts/parser-diff/diff.py "$vendor" "$out/$vendor.cap" "$out/$vendor.jsonl" || status=1
done
exit "$status"
