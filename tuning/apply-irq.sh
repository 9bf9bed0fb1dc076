#!/usr/bin/env bash
# Moves every IRQ off the engine's pinned cores (the same plan as tuning/check, from
# FEED_THREADS / CORE_PINNING / FEED_CORES / PRODUCER_CORE) onto the remaining housekeeping cores.
# Asks first (--yes skips), saves each IRQ's previous affinity; --restore puts them back.
# Stop irqbalance, or ban the pinned cores in it (IRQBALANCE_BANNED_CPULIST), or it will undo this.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
usage() { echo "usage: $0 [--yes] [--restore]"; }
ARGS=(); parse_apply_args "$@"
[ "$RESTORE" = 1 ] && { restore_knob irq; exit 0; }
PINNED=" $(pinned_cores) "
HOUSE=""
for c in $(allowed_cores); do [[ "$PINNED" == *" $c "* ]] || HOUSE+="$c "; done
[ -n "${PINNED// /}" ] || { echo "no pinned cores in the plan; nothing to move"; exit 0; }
[ -n "${HOUSE// /}" ] || { echo "every core is pinned; no housekeeping core left for IRQs" >&2; exit 1; }
TARGET="$(compress_list "$HOUSE")"
changes=()
for d in "$(p /proc/irq)"/[0-9]*; do
  [ -e "$d/smp_affinity_list" ] || continue
  rel="${d#"$TUNING_ROOT"}/smp_affinity_list"
  cur="$(readf "$rel")"
  aff=" $(expand_list "$cur") "
  for c in $PINNED; do
    if [[ "$aff" == *" $c "* ]]; then changes+=("$rel $cur"); break; fi
  done
done
if [ ${#changes[@]} -eq 0 ]; then echo "no IRQ may fire on pinned cores ($(compress_list "${PINNED# }")); nothing to do"; exit 0; fi
echo "pinned cores: $(compress_list "${PINNED# }"); moving ${#changes[@]} IRQs to $TARGET"
confirm "apply?" || { echo "nothing changed"; exit 0; }
failed=0
for c in "${changes[@]}"; do
  path="${c% *}"; prev="${c##* }"
  save_prev irq "$path" "$prev"
  # Some IRQs (per-CPU timers, managed IRQs) refuse a new affinity; report and go on.
  write_value "$path" "$TARGET" 2>/dev/null || { echo "  could not move ${path%/*} (kernel-managed)"; failed=$((failed + 1)); }
done
echo "moved $(( ${#changes[@]} - failed )) IRQs; restore: $0 --restore"
pgrep -x irqbalance >/dev/null 2>&1 && echo "note: irqbalance is running and may move them back"
exit 0
