# Shared helpers for the service scripts. Sourced, not run.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="${LAYER1_STATE_DIR:-$ROOT/.state}"

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# tcp_open HOST PORT: true when something accepts a TCP connection there within ~1 s.
tcp_open() {
  timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

# host_port_of "a:1,b:2" -> "a 1" (the first broker of a list, scheme stripped)
first_host_port() {
  local first="${1%%,*}"
  first="${first#*://}"
  first="${first%%/*}"
  first="${first##*@}"
  local host="${first%:*}" port="${first##*:}"
  [ "$host" = "$first" ] && port="$2"
  [ "$host" = "localhost" ] && host=127.0.0.1
  printf '%s %s\n' "$host" "$port"
}

# Runs apt-get install for the given Debian packages, updating the lists once if needed.
apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    log "apt-get is not available; install $* yourself"; return 1
  fi
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  export DEBIAN_FRONTEND=noninteractive
  if ! $sudo apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1; then
    $sudo apt-get update -q >/dev/null 2>&1 || true
    $sudo apt-get install -y -q --no-install-recommends "$@" >/dev/null || return 1
  fi
}
