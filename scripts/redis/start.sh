#!/usr/bin/env bash
# Makes sure a Redis answers at REDIS_URL (default redis://127.0.0.1:6379): reuses one that does,
# otherwise installs Debian's redis-server when absent and starts it on loopback, without persistence.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
read -r HOST PORT < <(first_host_port "${REDIS_URL:-redis://127.0.0.1:6379}" 6379)
DIR="$STATE_DIR/redis"

pong() { timeout 1 bash -c "exec 3<>/dev/tcp/$HOST/$PORT; printf 'PING\r\n' >&3; IFS= read -r l <&3; [[ \$l == +PONG* || \$l == -NOAUTH* ]]" 2>/dev/null; }

if pong; then log "redis already answering at $HOST:$PORT"; exit 0; fi
case "$HOST" in 127.*|localhost) ;; *) log "REDIS_URL host $HOST does not answer and is not local: not starting one"; exit 1;; esac
if ! command -v redis-server >/dev/null 2>&1; then
  log "installing redis-server from Debian's packages"
  apt_install redis-server || { log "could not install redis-server"; exit 1; }
fi
mkdir -p "$DIR"
redis-server --bind "$HOST" --port "$PORT" --daemonize yes --dir "$DIR" --save '' --appendonly no \
  --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log" --protected-mode yes 9>&-
# (9>&-: the daemon must not inherit services.sh's lock descriptor.)
for _ in $(seq 1 80); do pong && { log "redis ready at $HOST:$PORT"; exit 0; }; sleep 0.1; done
log "redis did not answer within 8 s"; tail -5 "$DIR/redis.log" >&2; exit 1
