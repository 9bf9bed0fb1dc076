#!/usr/bin/env bash
# Starts a single-node KRaft Apache Kafka (broker+controller) on 127.0.0.1:9092 / :9093 and waits
# until it serves requests. Idempotent:
#  - a broker already answering at KAFKA_BROKERS (default 127.0.0.1:9092) is used as is;
#  - a broker this script started earlier and that is still running is reused.
# State (data, log, pid) lives under $LAYER1_STATE_DIR/kafka (default .state/kafka, git-ignored).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
HERE="$ROOT/scripts/kafka"
read -r HOST PORT < <(first_host_port "${KAFKA_BROKERS:-127.0.0.1:9092}" 9092)
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
DIR="$STATE_DIR/kafka"
PIDFILE="$DIR/kafka.pid"
LOGFILE="$DIR/server.log"

ready() { tcp_open "$HOST" "$PORT" && { [ ! -f "$LOGFILE" ] || ! pid_alive || grep -q 'Kafka Server started' "$LOGFILE"; }; }
pid_alive() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

if ready; then
  log "kafka already answering at $HOST:$PORT"; exit 0
fi
case "$HOST" in 127.*|localhost) ;; *) log "KAFKA_BROKERS=$HOST:$PORT does not answer and is not local: not starting one"; exit 1;; esac

if ! pid_alive; then
  bash "$HERE/fetch.sh"
  command -v java >/dev/null || { log "java not found: Kafka 4 needs Java 17+"; exit 1; }
  mkdir -p "$DIR"
  CP="$HERE/libs/*"
  sed -e "s#@DATA@#$DIR/data#" -e "s#@HOST@#$HOST#g" -e "s#@PORT@#$PORT#g" \
      -e "s#@CPORT@#$CONTROLLER_PORT#g" "$HERE/server.properties.in" > "$DIR/server.properties"
  if [ ! -f "$DIR/data/meta.properties" ]; then
    rm -rf "$DIR/data"
    ID=$(java -Xmx128m -cp "$CP" kafka.tools.StorageTool random-uuid)
    java -Xmx256m -cp "$CP" kafka.tools.StorageTool format -t "$ID" -c "$DIR/server.properties" >"$DIR/format.log" 2>&1 \
      || { log "kafka storage format failed:"; cat "$DIR/format.log" >&2; exit 1; }
  fi
  : > "$LOGFILE"
  log "starting kafka on $HOST:$PORT (controller :$CONTROLLER_PORT), log $LOGFILE"
  start_ns=$(date +%s%N)
  # setsid: the broker must outlive the shell (and the test process) that started it.
  # 9>&-: it must not inherit services.sh's lock descriptor, or the lock is held forever.
  setsid nohup java -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:TieredStopAtLevel=1 \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$HERE/log4j2.properties" \
    -cp "$CP" kafka.Kafka "$DIR/server.properties" >>"$LOGFILE" 2>&1 < /dev/null 9>&- &
  echo $! > "$PIDFILE"
fi
for _ in $(seq 1 240); do
  if ready && grep -q 'Kafka Server started' "$LOGFILE"; then
    [ -n "${start_ns:-}" ] && log "kafka ready in $(( ($(date +%s%N) - start_ns) / 1000000 )) ms"
    exit 0
  fi
  pid_alive || { log "kafka exited during start-up; last lines of $LOGFILE:"; tail -20 "$LOGFILE" >&2; exit 1; }
  sleep 0.25
done
log "kafka did not become ready within 60 s"; tail -20 "$LOGFILE" >&2; exit 1
