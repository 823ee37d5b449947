#!/bin/bash
# systemctl for a node sandbox: the `nomad` unit is run by the local world's supervisor, reached over
# loopback. Exit codes follow systemctl: 0 ok, 1 failed job, 3 unit not active (is-active).
set -euo pipefail
# shellcheck source=/dev/null
source "$(dirname "$0")/node.env"

quiet=false
args=()
for arg in "$@"; do
  case "$arg" in
    --quiet | -q) quiet=true ;;
    --no-pager | --no-block) ;;
    *) args+=("$arg") ;;
  esac
done
action=${args[0]:-}
unit=${args[1]:-}
unit=${unit%.service}

case "$action" in
  daemon-reload) exit 0 ;;
  start | stop | restart | reload | is-active) ;;
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
output=$(jq -r '.output' <<<"$response")
if [[ -n "$output" ]] && ! $quiet; then
  printf '%s\n' "$output"
fi
exit "$(jq -r '.exitCode' <<<"$response")"
