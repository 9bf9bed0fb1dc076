#!/usr/bin/env bash
# Raises socket buffer limits so a burst at 09:15 IST fits in the kernel's receive buffers.
# Asks first (--yes skips), saves every previous value; --restore puts them back. Not persistent
# across reboots: copy the printed lines to /etc/sysctl.d/90-layer1.conf once satisfied.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
usage() { echo "usage: $0 [--yes] [--restore]"; }
ARGS=(); parse_apply_args "$@"
[ "$RESTORE" = 1 ] && { restore_knob sysctl; exit 0; }

SETTINGS=(
  "net.core.rmem_max=33554432"
  "net.core.rmem_default=4194304"
  "net.core.wmem_max=16777216"
  "net.core.netdev_max_backlog=5000"
  "net.ipv4.tcp_rmem=4096 1048576 33554432"
)
echo "will set:"
for s in "${SETTINGS[@]}"; do
  key="${s%%=*}"; path="/proc/sys/${key//.//}"
  printf '  %-30s %s -> %s\n' "$key" "$(readf "$path" | tr '\t' ' ')" "${s#*=}"
done
confirm "apply these sysctls?" || { echo "nothing changed"; exit 0; }
for s in "${SETTINGS[@]}"; do
  key="${s%%=*}"; path="/proc/sys/${key//.//}"
  need_write "$path"
  save_prev sysctl "$path" "$(readf "$path" | tr '\t' ' ')"
  write_value "$path" "${s#*=}"
done
echo "applied; previous values saved in $(state_file sysctl) (restore: $0 --restore)"
