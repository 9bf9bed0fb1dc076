#!/usr/bin/env bash
# Seeds the cargo-fuzz corpora (fuzz/corpus is git-ignored) from the committed fixtures:
# real Kite and Upstox captures; Angel One, Dhan and capture-file fixtures built by
# tests/fuzz_seeds.rs (which checks them); hand-written JSON frames; WebSocket byte streams
# written here (first byte: the fuzz target's chunk size).
set -euo pipefail
cd "$(dirname "$0")"
F=../tests/fixtures
mkdir -p corpus/kite corpus/upstox corpus/angel corpus/dhan corpus/json corpus/capture corpus/ws
cp "$F"/kite/*.bin "$F"/kite/text_*.json corpus/kite/
cp "$F"/upstox/*.bin corpus/upstox/
cp "$F"/angel/* corpus/angel/
cp "$F"/dhan/*.bin corpus/dhan/
cp "$F"/json/*.json corpus/json/
cp "$F"/capture/*.l1cap corpus/capture/
# Server frames: binary; text "hi"; a text message in two fragments with a ping between them;
# a 126-length binary (16-bit length); pong; close 1000 "ok".
printf '\x07\x82\x05hello' > corpus/ws/binary
printf '\x01\x81\x02hi' > corpus/ws/text
printf '\x03\x01\x03abc\x89\x01p\x80\x02de' > corpus/ws/fragments_ping
{ printf '\x40\x82\x7e\x00\x7e'; head -c 126 /dev/zero; } > corpus/ws/len16
printf '\x02\x8a\x00\x88\x04\x03\xe8ok' > corpus/ws/pong_close
for t in kite upstox angel dhan json capture ws; do printf '%s %s, ' "$(ls corpus/$t | wc -l)" "$t"; done
echo "files in the corpora"
