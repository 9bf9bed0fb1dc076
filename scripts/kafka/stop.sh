#!/usr/bin/env bash
# Stops the broker started by scripts/kafka/start.sh: SIGTERM (controlled shutdown), then waits.
# `--kill` sends SIGKILL instead (used by the outage tests).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
PIDFILE="$STATE_DIR/kafka/kafka.pid"
[ -f "$PIDFILE" ] || { log "no kafka started by this project"; exit 0; }
PID=$(cat "$PIDFILE")
SIG=TERM; [ "${1:-}" = "--kill" ] && SIG=KILL
if kill -0 "$PID" 2>/dev/null; then
  kill -s "$SIG" "$PID"
  for _ in $(seq 1 120); do kill -0 "$PID" 2>/dev/null || break; sleep 0.25; done
  kill -0 "$PID" 2>/dev/null && { log "kafka did not stop in 30 s; killing"; kill -9 "$PID"; }
fi
rm -f "$PIDFILE"
log "kafka stopped"
