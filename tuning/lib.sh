# Shared helpers for tuning/check and tuning/apply-*.sh. Sourced, not run.
# shellcheck shell=bash
#
# TUNING_ROOT (default empty) prefixes every /proc, /sys and /etc path, so the scripts can be
# exercised against a copy of those trees; TUNING_STATE_DIR (default /var/lib/layer1-tuning)
# holds the previous values that `--restore` puts back.

TUNING_ROOT="${TUNING_ROOT:-}"
TUNING_STATE_DIR="${TUNING_STATE_DIR:-/var/lib/layer1-tuning}"

p() { printf '%s%s' "$TUNING_ROOT" "$1"; }

# readf PATH: the file's first line, or nothing when unreadable.
readf() { [ -r "$(p "$1")" ] && head -n1 "$(p "$1")" 2>/dev/null; }

# selected "always [madvise] never" -> madvise
selected() { sed -n 's/.*\[\([^]]*\)\].*/\1/p'; }

# expand_list "1-3,5" -> "1 2 3 5" (bounded to ids < 4096)
expand_list() {
  local part a b out=()
  IFS=',' read -ra parts <<<"${1// /}"
  for part in "${parts[@]}"; do
    [ -z "$part" ] && continue
    a="${part%-*}"; b="${part#*-}"
    [[ "$a" =~ ^[0-9]+$ && "$b" =~ ^[0-9]+$ ]] || continue
    [ "$b" -gt 4095 ] && b=4095
    for ((c = a; c <= b; c++)); do out+=("$c"); done
  done
  printf '%s\n' "${out[@]}" | sort -n | uniq | tr '\n' ' ' | sed 's/ $//'
}

# compress_list "0 1 2 5" -> "0-2,5"
compress_list() {
  local out="" start="" prev=""
  for c in $1; do
    if [ -z "$start" ]; then start=$c; prev=$c; continue; fi
    if [ "$c" -eq $((prev + 1)) ]; then prev=$c; continue; fi
    out+="${out:+,}$start"; [ "$prev" != "$start" ] && out+="-$prev"
    start=$c; prev=$c
  done
  [ -n "$start" ] && { out+="${out:+,}$start"; [ "$prev" != "$start" ] && out+="-$prev"; }
  printf '%s' "$out"
}

# env_or_dotenv NAME DEFAULT: the variable from the environment, else from ./.env, else DEFAULT
# (the engine reads the same two places, the environment winning).
env_or_dotenv() {
  local name="$1" def="$2" v="${!1-}"
  if [ -z "$v" ] && [ -r .env ]; then
    v="$(sed -n "s/^[[:space:]]*${name}[[:space:]]*=[[:space:]]*//p" .env | tail -n1 | sed 's/^"\(.*\)"$/\1/; s/[[:space:]]*$//')"
  fi
  printf '%s' "${v:-$def}"
}

# The cores this shell may run on (the engine plans from its own affinity mask the same way).
allowed_cores() {
  local l
  l="$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status 2>/dev/null)"
  if [ -n "$l" ]; then expand_list "$l"; else seq 0 $(($(nproc) - 1)) | tr '\n' ' ' | sed 's/ $//'; fi
}

# plan_threads: sets PLAN_FEED (array of core ids or "none") and PLAN_PRODUCER, with the rule of
# src/affinity.rs `plan`: explicit FEED_CORES / PRODUCER_CORE win (ids outside the allowed set run
# unpinned); in auto mode feed threads take the highest cores and the producer the next one down,
# only when there are more cores than feed threads; otherwise nothing is pinned.
plan_threads() {
  local threads pinning feed_cores producer_core allowed
  threads="$(env_or_dotenv FEED_THREADS 1)"
  pinning="$(env_or_dotenv CORE_PINNING auto | tr '[:upper:]' '[:lower:]')"
  feed_cores="$(env_or_dotenv FEED_CORES "")"
  producer_core="$(env_or_dotenv PRODUCER_CORE "")"
  allowed=" $(allowed_cores) "
  PLAN_FEED=(); PLAN_PRODUCER=none
  [[ "$threads" =~ ^[0-9]+$ ]] && [ "$threads" -ge 1 ] || threads=1
  in_allowed() { [[ "$allowed" == *" $1 "* ]]; }
  if [ -n "$feed_cores" ] || [ -n "$producer_core" ]; then
    if [ -n "$feed_cores" ]; then
      IFS=',' read -ra fc <<<"${feed_cores// /}"
      for c in "${fc[@]}"; do if in_allowed "$c"; then PLAN_FEED+=("$c"); else PLAN_FEED+=(none); fi; done
    else
      for ((i = 0; i < threads; i++)); do PLAN_FEED+=(none); done
    fi
    producer_core="${producer_core%%,*}"
    if [ -n "$producer_core" ] && in_allowed "$producer_core"; then PLAN_PRODUCER="$producer_core"; fi
  else
    local sorted n
    read -ra sorted <<<"$(tr ' ' '\n' <<<"${allowed# }" | sed '/^$/d' | sort -rn | tr '\n' ' ')"
    n=${#sorted[@]}
    if [ "$pinning" != "off" ] && [ "$n" -gt "$threads" ]; then
      for ((i = 0; i < threads; i++)); do PLAN_FEED+=("${sorted[$i]}"); done
      PLAN_PRODUCER="${sorted[$threads]:-none}"
    else
      for ((i = 0; i < threads; i++)); do PLAN_FEED+=(none); done
    fi
  fi
}

# pinned_cores: the distinct cores of the plan.
pinned_cores() {
  plan_threads
  printf '%s\n' "${PLAN_FEED[@]}" "$PLAN_PRODUCER" | grep -v '^none$' | sort -n | uniq | tr '\n' ' ' | sed 's/ $//'
}

# ---- apply-script helpers ----

YES=0
RESTORE=0
parse_apply_args() {
  for a in "$@"; do
    case "$a" in
      --yes|-y) YES=1 ;;
      --restore) RESTORE=1 ;;
      -h|--help) usage; exit 0 ;;
      --*) echo "unknown option $a" >&2; usage >&2; exit 2 ;;
      *) ARGS+=("$a") ;;
    esac
  done
}

# confirm "question": true when --yes was given or the operator answers y.
confirm() {
  [ "$YES" = 1 ] && return 0
  local ans
  read -r -p "$1 [y/N] " ans || return 1
  [[ "$ans" =~ ^[Yy] ]]
}

need_write() {
  local f; f="$(p "$1")"
  if [ ! -w "$f" ]; then echo "cannot write $f (run as root)" >&2; return 1; fi
}

state_file() { mkdir -p "$TUNING_STATE_DIR" && printf '%s/%s.prev' "$TUNING_STATE_DIR" "$1"; }

# save_prev KNOB PATH: appends "PATH<TAB>current value" unless PATH is already saved, so that
# applying twice keeps the original value for --restore.
save_prev() {
  local sf; sf="$(state_file "$1")"
  touch "$sf"
  if ! cut -f1 "$sf" | grep -qxF "$2"; then
    printf '%s\t%s\n' "$2" "$3" >>"$sf"
  fi
}

# write_value PATH VALUE
write_value() {
  printf '%s\n' "$2" >"$(p "$1")"
}

# restore_knob KNOB: writes every saved value back, then removes the state file.
restore_knob() {
  local sf path value; sf="$(state_file "$1")"
  if [ ! -s "$sf" ]; then echo "nothing saved for $1 in $TUNING_STATE_DIR"; return 0; fi
  echo "restoring $1:"
  while IFS=$'\t' read -r path value; do
    [ -z "$path" ] && continue
    printf '  %s <- %s\n' "$path" "$value"
    if [ "$value" = "<absent>" ]; then rm -f "$(p "$path")"; else write_value "$path" "$value"; fi
  done <"$sf"
  if confirm "restored; forget the saved values?"; then rm -f "$sf"; fi
}
