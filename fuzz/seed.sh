#!/usr/bin/env bash
# Seeds the cargo-fuzz corpora (fuzz/corpus is git-ignored) from the committed fixtures:
# real Kite and Upstox captures; Angel One, Dhan and capture-file fixtures built by
# tests/fuzz_seeds.rs (which checks them); hand-written JSON frames.
set -euo pipefail
cd "$(dirname "$0")"
F=../tests/fixtures
mkdir -p corpus/kite corpus/upstox corpus/angel corpus/dhan corpus/json corpus/capture
cp "$F"/kite/*.bin "$F"/kite/text_*.json corpus/kite/
cp "$F"/upstox/*.bin corpus/upstox/
cp "$F"/angel/* corpus/angel/
cp "$F"/dhan/*.bin corpus/dhan/
cp "$F"/json/*.json corpus/json/
cp "$F"/capture/*.l1cap corpus/capture/
for t in kite upstox angel dhan json capture; do printf '%s %s, ' "$(ls corpus/$t | wc -l)" "$t"; done
echo "files in the corpora"
