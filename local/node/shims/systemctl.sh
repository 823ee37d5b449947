#!/bin/bash
# systemctl for a node sandbox: the `nomad` unit is run by the local world's supervisor, reached over
# loopback. Options may come anywhere, as systemctl's getopt parsing allows:
#   systemctl [options] start|stop|restart|reload|is-active|reset-failed|daemon-reload [nomad[.service]]
#   systemctl show nomad [-p NAME[,NAME...] | --property=NAME[,NAME...]]... [--value]
# `show` knows MainPID (0 when not running), ActiveState, SubState, Result and NRestarts; it prints
# NAME=value lines, or the values alone with --value. Exit codes follow systemctl: 0 ok, 1 failed job,
# 3 unit not active (is-active), 5 unit not found.
set -euo pipefail
# shellcheck source=/dev/null
source "$(dirname "$0")/node.env"

quiet=false
value_only=false
properties=()
args=()
while (($# > 0)); do
  case "$1" in
    --quiet | -q) quiet=true ;;
    --value) value_only=true ;;
    --no-pager | --no-block | --no-legend | --no-ask-password) ;;
    --property=*) IFS=, read -ra names <<<"${1#--property=}" && properties+=("${names[@]}") ;;
    -p?*) IFS=, read -ra names <<<"${1#-p}" && properties+=("${names[@]}") ;;
    --property | -p)
      if (($# < 2)); then
        echo "systemctl: option '$1' requires an argument" >&2
        exit 1
      fi
      IFS=, read -ra names <<<"$2" && properties+=("${names[@]}")
      shift
      ;;
    -*)
      echo "systemctl: unrecognized option '$1'" >&2
      exit 1
      ;;
    *) args+=("$1") ;;
  esac
  shift
done
action=${args[0]:-}
unit=${args[1]:-}
unit=${unit%.service}

case "$action" in
  daemon-reload) exit 0 ;;
  start | stop | restart | reload | is-active | reset-failed | show) ;;
  *)
    echo "systemctl (nomad-rotator local world): unsupported action '$action'" >&2
    exit 1
    ;;
esac
if [[ "$unit" != nomad ]]; then
  echo "Unit $unit.service not found." >&2
  exit 5
fi

response=$(curl -sf --max-time 60 -X POST "$SUPERVISOR_URL/nodes/$NODE_ID/$action") || {
  echo "Failed to connect to the service manager" >&2
  exit 1
}

if [[ "$action" == show ]]; then
  if ((${#properties[@]} == 0)); then
    mapfile -t properties < <(jq -r '.properties | keys_unsorted[]' <<<"$response")
  fi
  for name in "${properties[@]}"; do
    # systemctl prints nothing for a property the unit does not have.
    jq -e --arg name "$name" '.properties | has($name)' <<<"$response" >/dev/null || continue
    property=$(jq -r --arg name "$name" '.properties[$name]' <<<"$response")
    if $value_only; then
      printf '%s\n' "$property"
    else
      printf '%s=%s\n' "$name" "$property"
    fi
  done
  exit 0
fi

output=$(jq -r '.output' <<<"$response")
code=$(jq -r '.exitCode' <<<"$response")
if [[ "$action" == is-active ]]; then
  $quiet || printf '%s\n' "$output"
elif [[ -n "$output" ]]; then
  # A failed job is reported on stderr, --quiet or not.
  printf '%s\n' "$output" >&2
fi
exit "$code"
