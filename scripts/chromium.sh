#!/usr/bin/env bash
# Prints the path of a headless-capable Chromium, installing Debian's `chromium` package when
# none is present. Never downloads a browser of its own (no Playwright/Puppeteer fetch): the
# browser tests use the distribution's package only. Serialised with a lock so that parallel test
# binaries never run two apt-get at once.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

find_chromium() {
  local c
  for c in "${CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
    [ -n "$c" ] && [ -x "$c" ] && { printf '%s\n' "$c"; return 0; }
  done
  return 1
}

if find_chromium; then exit 0; fi
mkdir -p "$STATE_DIR"
exec 9>"$STATE_DIR/chromium.lock"
flock 9
if find_chromium; then exit 0; fi
log "installing Debian's chromium package"
apt_install chromium || { log "could not install chromium (apt-get install -y chromium)"; exit 1; }
find_chromium || { log "chromium installed but not found at /usr/bin/chromium"; exit 1; }
