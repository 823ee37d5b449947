#!/bin/bash
# nomad for a node sandbox: the CLI commands the rotation runs on a node, made the way the real CLI
# makes them, over the local agent's HTTPS API (curl here):
#   nomad operator gossip keyring generate | list | install <key> | use <key> | remove <key>
#   nomad server members
# The address, TLS files and ACL token come from NOMAD_ADDR (default http://127.0.0.1:4646, as the
# real CLI's), NOMAD_CACERT, NOMAD_CLIENT_CERT, NOMAD_CLIENT_KEY, NOMAD_TOKEN or the -address,
# -ca-cert, -client-cert, -client-key, -token flags. Output and exit codes follow Nomad's CLI
# (command/operator_gossip_keyring_*.go, command/server_members.go). Anything else exits 1.
# It needs nothing of its environment beyond PATH: the SSM agent runs scripts without HOME, from
# /usr/bin.
set -euo pipefail

address=${NOMAD_ADDR:-http://127.0.0.1:4646}
ca_cert=${NOMAD_CACERT:-}
client_cert=${NOMAD_CLIENT_CERT:-}
client_key=${NOMAD_CLIENT_KEY:-}
token=${NOMAD_TOKEN:-}

unsupported() {
  printf "nomad (nomad-rotator local world): unsupported command: 'nomad%s'\n" "${*:+ $*}" >&2
  exit 1
}

if [[ "${1:-}" == operator && "${2:-}" == gossip && "${3:-}" == keyring && -n "${4:-}" ]]; then
  command=keyring
  action=$4
  shift 4
elif [[ "${1:-}" == server && "${2:-}" == members ]]; then
  command=members
  shift 2
elif [[ "${1:-}" == operator && "${2:-}" == keyring ]]; then
  # Deprecated in 1.4.0 and removed in 1.5.0 (PR #16068); the flags form no longer exists.
  echo "nomad (nomad-rotator local world): 'nomad operator keyring' was removed in Nomad 1.5; use 'nomad operator gossip keyring list|install|use|remove'" >&2
  exit 1
else
  unsupported "$@"
fi

# Go's flag package: -name=value, -name value, and the same with two dashes; flags before arguments.
args=()
while (($# > 0)); do
  case "$1" in
    -address=* | --address=*) address=${1#*=} ;;
    -ca-cert=* | --ca-cert=*) ca_cert=${1#*=} ;;
    -client-cert=* | --client-cert=*) client_cert=${1#*=} ;;
    -client-key=* | --client-key=*) client_key=${1#*=} ;;
    -token=* | --token=*) token=${1#*=} ;;
    -address | --address | -ca-cert | --ca-cert | -client-cert | --client-cert | -client-key | --client-key | \
      -token | --token)
      if (($# < 2)); then
        echo "flag needs an argument: $1" >&2
        exit 1
      fi
      flag=${1#-}
      case "${flag#-}" in
        address) address=$2 ;;
        ca-cert) ca_cert=$2 ;;
        client-cert) client_cert=$2 ;;
        client-key) client_key=$2 ;;
        token) token=$2 ;;
      esac
      shift
      ;;
    -*)
      echo "flag provided but not defined: $1" >&2
      exit 1
      ;;
    *)
      args+=("$@")
      break
      ;;
  esac
  shift
done

address=${address%/}
if [[ ! "$address" =~ ^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$ ]]; then
  echo "Error initializing client: invalid address '$address'" >&2
  exit 1
fi
for file in "$ca_cert" "$client_cert" "$client_key"; do
  [[ -z "$file" ]] && continue
  if [[ ! "$file" =~ ^/[A-Za-z0-9._/-]+$ ]]; then
    echo "Error initializing client: invalid path '$file'" >&2
    exit 1
  fi
  if [[ ! -r "$file" ]]; then
    echo "Error initializing client: open $file: no such file or directory" >&2
    exit 1
  fi
done
# Nomad's API client sends the token as X-Nomad-Token; a line break in it would forge headers.
if [[ "$token" =~ [[:cntrl:]] ]]; then
  echo "Error initializing client: the token contains a control character" >&2
  exit 1
fi

# api METHOD PATH [body]: prints the response body, or on failure the error the Go API client
# would report (an unexpected status with its body, or the failed request) and returns 1.
api() {
  # -q first: curl must not read a ~/.curlrc (nor root's, when HOME is unset); Nomad's CLI reads none.
  local method=$1 path=$2 data=${3:-} curl_args=(-q -sS --max-time 60 -X "$1" -w '\n%{http_code}')
  [[ -n "$ca_cert" ]] && curl_args+=(--cacert "$ca_cert")
  [[ -n "$client_cert" ]] && curl_args+=(--cert "$client_cert")
  [[ -n "$client_key" ]] && curl_args+=(--key "$client_key")
  # The token travels in a header read from a pipe: a secret must not show on curl's command line.
  [[ -n "$token" ]] && curl_args+=(-H "@/dev/fd/3")
  # A body travels on stdin: a gossip key must not show on curl's command line.
  [[ -n "$data" ]] && curl_args+=(--data-binary @-)
  local response status errors
  errors=$(mktemp)
  if ! response=$(printf '%s' "$data" | curl "${curl_args[@]}" "$address$path" 2>"$errors" \
    3< <(printf 'X-Nomad-Token: %s\n' "$token")); then
    local verb=${method,,}
    printf '%s "%s": %s' "${verb^}" "$address$path" "$(sed -E 's/^curl: \([0-9]+\) //' "$errors")"
    rm -f "$errors"
    return 1
  fi
  rm -f "$errors"
  status=${response##*$'\n'}
  response=${response%$'\n'*}
  if [[ "$status" != 200 ]]; then
    printf 'Unexpected response code: %s (%s)' "$status" "$response"
    return 1
  fi
  printf '%s' "$response"
}

keyring() {
  local action=$1
  shift
  local key=''
  case "$action" in
    generate | list)
      if (($# != 0)); then
        echo "This command takes no arguments" >&2
        echo "For additional help try 'nomad operator gossip keyring $action -help'" >&2
        exit 1
      fi
      ;;
    install | use | remove)
      if (($# != 1)); then
        echo "This command requires one argument: <key>" >&2
        echo "For additional help try 'nomad operator gossip keyring $action -help'" >&2
        exit 1
      fi
      key=$1
      if [[ ! "$key" =~ ^[A-Za-z0-9+/]+={0,2}$ ]]; then
        echo "error: the key is not standard base64" >&2
        exit 1
      fi
      ;;
    *) unsupported operator gossip keyring "$action" ;;
  esac
  local body
  case "$action" in
    generate)
      head -c 32 /dev/urandom | base64 -w 0
      echo
      ;;
    list)
      echo "Gathering installed encryption keys..."
      body=$(api GET /v1/agent/keyring/list) || {
        echo "error: $body" >&2
        exit 1
      }
      echo "Key"
      jq -r '.Keys | keys_unsorted[]' <<<"$body"
      ;;
    install | use | remove)
      case "$action" in
        install) echo "Installing new gossip encryption key..." ;;
        use) echo "Changing primary gossip encryption key..." ;;
        remove) echo "Removing gossip encryption key..." ;;
      esac
      body=$(api PUT "/v1/agent/keyring/$action" "{\"Key\":\"$key\"}") || {
        echo "error: $body" >&2
        exit 1
      }
      ;;
  esac
}

members() {
  if ((${#args[@]} != 0)); then
    echo "This command takes no arguments" >&2
    echo "For additional help try 'nomad server members -help'" >&2
    exit 1
  fi
  local listing leaders='{}' region answer leader_error=''
  listing=$(api GET /v1/agent/members) || {
    echo "Error querying servers: $listing" >&2
    exit 1
  }
  # The leader column compares each region's leader with the member's address and RPC port.
  while IFS= read -r region; do
    [[ "$region" =~ ^[A-Za-z0-9_.-]+$ ]] || continue
    if answer=$(api GET "/v1/status/leader?region=$region"); then
      leaders=$(jq -c --arg region "$region" --argjson leader "$answer" '. + {($region): $leader}' <<<"$leaders")
    else
      leader_error="Region \"$region\": $answer"
    fi
  done < <(jq -r '[.Members[] | select(.Status != "left") | .Tags.region // ""] | unique[]' <<<"$listing")
  # columnize.SimpleFormat: columns padded to their widest cell, two spaces apart, the last unpadded.
  jq -r --argjson leaders "$leaders" '
    [["Name", "Address", "Port", "Status", "Leader", "Raft Version", "Build", "Datacenter", "Region"]]
    + (.Members | sort_by(.Tags.region // "", .Tags.dc // "", .Name) | map([
        .Name, .Addr, (.Port | tostring), .Status,
        ($leaders[.Tags.region // ""] == "\(.Addr):\(.Tags.port // "")" | tostring),
        .Tags.raft_vsn // "", .Tags.build // "", .Tags.dc // "", .Tags.region // ""
      ]))
    | (map(map(length)) | transpose | map(max)) as $widths
    | .[] | [to_entries[] | if .key == ($widths | length) - 1 then .value
        else .value + (" " * ($widths[.key] - (.value | length) + 2)) end] | join("")
  ' <<<"$listing"
  if [[ -n "$leader_error" ]]; then
    echo
    echo "Error determining leaders: $leader_error" >&2
    exit 1
  fi
}

case "$command" in
  keyring) keyring "$action" "${args[@]}" ;;
  members) members ;;
esac
