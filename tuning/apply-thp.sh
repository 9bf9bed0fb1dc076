#!/usr/bin/env bash
# Sets transparent huge pages to madvise (enabled and defrag), so khugepaged compaction never
# stalls the engine. Asks first (--yes skips), saves the previous values; --restore puts them back.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
usage() { echo "usage: $0 [--yes] [--restore]"; }
ARGS=(); parse_apply_args "$@"
[ "$RESTORE" = 1 ] && { restore_knob thp; exit 0; }
E=/sys/kernel/mm/transparent_hugepage/enabled
D=/sys/kernel/mm/transparent_hugepage/defrag
cur_e="$(readf $E | selected)"; cur_d="$(readf $D | selected)"
[ -n "$cur_e" ] || { echo "transparent huge pages not available here"; exit 0; }
echo "THP enabled: $cur_e -> madvise; defrag: $cur_d -> madvise"
confirm "apply?" || { echo "nothing changed"; exit 0; }
need_write $E; need_write $D
save_prev thp $E "$cur_e"; save_prev thp $D "$cur_d"
write_value $E madvise; write_value $D madvise
echo "applied; restore: $0 --restore"
