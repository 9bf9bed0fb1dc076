#!/usr/bin/env bash
# Stops the local broker: SIGTERM (controlled shutdown), then waits. `--kill` sends SIGKILL
# instead (the outage tests). The broker is found by the pid file start.sh wrote, or else by
# the kafka.Kafka process listening on KAFKA_BROKERS' port (a broker started from another
# checkout of this project, e.g. by a parallel build).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
read -r HOST PORT < <(first_host_port "${KAFKA_BROKERS:-127.0.0.1:9092}" 9092)
PIDFILE="$STATE_DIR/kafka/kafka.pid"
PID=""
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  PID=$(cat "$PIDFILE")
elif command -v ss >/dev/null 2>&1; then
  for p in $(ss -ltnpH "sport = :$PORT" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
    if tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka'; then PID=$p; fi
  done
fi
[ -n "$PID" ] || { log "no local kafka broker running"; rm -f "$PIDFILE"; exit 0; }
SIG=TERM; [ "${1:-}" = "--kill" ] && SIG=KILL
kill -s "$SIG" "$PID"
for _ in $(seq 1 120); do kill -0 "$PID" 2>/dev/null || break; sleep 0.25; done
if kill -0 "$PID" 2>/dev/null; then log "kafka did not stop in 30 s; killing"; kill -9 "$PID"; fi
rm -f "$PIDFILE"
log "kafka stopped ($SIG)"
