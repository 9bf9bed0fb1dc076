#!/usr/bin/env bash
# Sets every CPU's frequency governor to performance and disables idle states whose exit
# latency exceeds MAX_EXIT_US (default 10), so a core never ramps up or wakes from deep sleep
# when a frame arrives. Asks first (--yes skips), saves previous values; --restore puts them back.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
usage() { echo "usage: $0 [--yes] [--restore]   (env MAX_EXIT_US=10)"; }
ARGS=(); parse_apply_args "$@"
[ "$RESTORE" = 1 ] && { restore_knob governor; exit 0; }
MAX_EXIT_US="${MAX_EXIT_US:-10}"
changes=()
for g in "$(p /sys/devices/system/cpu)"/cpu[0-9]*/cpufreq/scaling_governor; do
  [ -e "$g" ] || continue
  rel="${g#"$TUNING_ROOT"}"
  [ "$(readf "$rel")" = performance ] || changes+=("$rel performance")
done
for s in "$(p /sys/devices/system/cpu)"/cpu[0-9]*/cpuidle/state*; do
  [ -e "$s/disable" ] || continue
  rel="${s#"$TUNING_ROOT"}"
  lat="$(readf "$rel/latency")"
  [ "${lat:-0}" -gt "$MAX_EXIT_US" ] && [ "$(readf "$rel/disable")" != 1 ] && changes+=("$rel/disable 1")
done
if [ ${#changes[@]} -eq 0 ]; then echo "nothing to change"; exit 0; fi
echo "will set:"; printf '  %s\n' "${changes[@]}"
confirm "apply?" || { echo "nothing changed"; exit 0; }
for c in "${changes[@]}"; do
  path="${c% *}"; val="${c##* }"
  need_write "$path"
  save_prev governor "$path" "$(readf "$path")"
  write_value "$path" "$val"
done
echo "applied; restore: $0 --restore"
