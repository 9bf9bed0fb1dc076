#!/usr/bin/env bash
# Isolates the engine's pinned cores from the scheduler, the timer tick and RCU callbacks by
# adding isolcpus=managed_irq,domain,<cores> nohz_full=<cores> rcu_nocbs=<cores> to the kernel
# command line through a GRUB drop-in (/etc/default/grub.d/90-layer1.cfg). Takes effect after
# update-grub and a reboot. Asks first (--yes skips); --restore removes the drop-in (or puts back
# the one it replaced). Cores default to the plan of tuning/check; override with CORES=2-3.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
usage() { echo "usage: $0 [--yes] [--restore]   (env CORES=list)"; }
ARGS=(); parse_apply_args "$@"
DROPIN=/etc/default/grub.d/90-layer1.cfg
if [ "$RESTORE" = 1 ]; then
  sf="$(state_file isolation)"
  if [ -s "$sf" ]; then cp "$sf" "$(p $DROPIN)"; echo "restored the previous $DROPIN"; rm -f "$sf"
  elif [ -e "$sf" ]; then rm -f "$(p $DROPIN)" "$sf"; echo "removed $DROPIN"
  else echo "nothing saved for isolation"; fi
  echo "run update-grub and reboot for it to take effect"; exit 0
fi
CORES="${CORES:-$(compress_list "$(pinned_cores)")}"
[ -n "$CORES" ] || { echo "no pinned cores in the plan; set CORES=..." >&2; exit 1; }
[[ "$CORES" =~ ^[0-9,-]+$ ]] || { echo "bad CORES list" >&2; exit 2; }
line="GRUB_CMDLINE_LINUX_DEFAULT=\"\$GRUB_CMDLINE_LINUX_DEFAULT isolcpus=managed_irq,domain,$CORES nohz_full=$CORES rcu_nocbs=$CORES\""
echo "will write $DROPIN:"; echo "  $line"
confirm "apply?" || { echo "nothing changed"; exit 0; }
mkdir -p "$(p /etc/default/grub.d)"
sf="$(state_file isolation)"
if [ ! -e "$sf" ]; then
  # An empty state file means "there was no drop-in": --restore removes ours.
  if [ -e "$(p $DROPIN)" ]; then cp "$(p $DROPIN)" "$sf"; else : >"$sf"; fi
fi
printf '# written by layer1 tuning/apply-isolation.sh; remove with --restore\n%s\n' "$line" >"$(p $DROPIN)"
echo "written; run update-grub and reboot, then tuning/check"
