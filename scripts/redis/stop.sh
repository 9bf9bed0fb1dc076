#!/usr/bin/env bash
# Stops the Redis started by scripts/redis/start.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
PIDFILE="$STATE_DIR/redis/redis.pid"
[ -f "$PIDFILE" ] || { log "no redis started by this project"; exit 0; }
PID=$(cat "$PIDFILE")
kill "$PID" 2>/dev/null || true
for _ in $(seq 1 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
rm -f "$PIDFILE"; log "redis stopped"
