#!/usr/bin/env bash
# Brings the engine's services up or down: `scripts/services.sh up|down`.
# Serialised with a lock so that parallel test binaries never start two brokers.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
mkdir -p "$STATE_DIR"
exec 9>"$STATE_DIR/services.lock"
flock 9
case "${1:-up}" in
  up)   bash "$ROOT/scripts/redis/start.sh"; bash "$ROOT/scripts/kafka/start.sh" ;;
  down) bash "$ROOT/scripts/kafka/stop.sh"; bash "$ROOT/scripts/redis/stop.sh" ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
