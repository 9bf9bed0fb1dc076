#!/usr/bin/env bash
# Turns off adaptive RX coalescing and sets rx-usecs (default 0) on the market-data NIC, so a
# frame raises its interrupt at once. Asks first (--yes skips), saves the previous settings;
# --restore puts them back. Needs ethtool and root.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
usage() { echo "usage: $0 [--yes] [--restore] IFACE   (env RX_USECS=0)"; }
ARGS=(); parse_apply_args "$@"
IFACE="${ARGS[0]:-}"
[ -n "$IFACE" ] || { usage >&2; exit 2; }
[[ "$IFACE" =~ ^[A-Za-z0-9_.:-]+$ ]] || { echo "bad interface name" >&2; exit 2; }
command -v ethtool >/dev/null 2>&1 || { echo "ethtool is not installed (apt-get install ethtool)" >&2; exit 1; }
SF="$(state_file "nic-$IFACE")"
if [ "$RESTORE" = 1 ]; then
  [ -s "$SF" ] || { echo "nothing saved for $IFACE"; exit 0; }
  read -r ad rx <"$SF"
  echo "restoring $IFACE: adaptive-rx $ad rx-usecs $rx"
  ethtool -C "$IFACE" adaptive-rx "$ad" rx-usecs "$rx"
  rm -f "$SF"; exit 0
fi
out="$(ethtool -c "$IFACE")" || { echo "cannot read coalescing of $IFACE" >&2; exit 1; }
ad="$(awk '/^Adaptive RX:/ {print $3}' <<<"$out")"; rx="$(awk '/^rx-usecs:/ {print $2}' <<<"$out")"
RX_USECS="${RX_USECS:-0}"
echo "$IFACE: adaptive-rx ${ad:-?} -> off, rx-usecs ${rx:-?} -> $RX_USECS"
confirm "apply?" || { echo "nothing changed"; exit 0; }
[ -s "$SF" ] || printf '%s %s\n' "${ad:-off}" "${rx:-0}" >"$SF"
ethtool -C "$IFACE" adaptive-rx off rx-usecs "$RX_USECS"
echo "applied; restore: $0 --restore $IFACE"
