#!/bin/bash
# nomad-rotator gossip: one step of a gossip key rotation on a Nomad server, then this server's view
# of the keyring, by fingerprint only. inspect changes nothing; install reads the staged key from
# Secrets Manager with the instance role and installs it; use makes an installed key the primary;
# remove takes every other key out of the cluster's keyring; discard takes a rotation's own key out
# again (a halted rotation that never reached use: no server has it as primary); repair brings back
# a server the cluster's key no longer reaches (stop, serf.keyring rewritten atomically to the
# current key alone, start, then proof that it rejoined every server); persist writes the key into a 0600
# `encrypt` config file that only a fresh data dir reads. Keys and the ACL token reach the local
# API through process substitution (file descriptors), never argv, a parameter or the output.
# Every step is idempotent. Runs under the SSM agent: root, no HOME, no NOMAD_* variables.
set -euo pipefail
umask 077
exec 3>&1 1>&2 # stdout carries exactly one JSON line; everything else goes to stderr

ATTEMPT_ID='{{ attemptId }}'
OPERATION='{{ operation }}'
SECRET_ID='{{ secretId }}'
VERSION_ID='{{ versionId }}'
KEY_FINGERPRINT='{{ keyFingerprint }}'
TOKEN_SECRET_ID='{{ tokenSecretId }}'
NOMAD_ADDR='{{ nomadAddress }}'
VERIFY_HTTPS_CLIENT='{{ verifyHttpsClient }}'
CA_PATH='{{ caPath }}'
CLI_CERT_PATH='{{ cliCertPath }}'
CLI_KEY_PATH='{{ cliKeyPath }}'
KEYRING_PATH='{{ keyringPath }}'
ENCRYPT_CONFIG_PATH='{{ encryptConfigPath }}'
ENCRYPT_CONFIG_OWNER='{{ encryptConfigOwner }}'
EXPECTED_SERVERS='{{ expectedServers }}'
HEALTH_TIMEOUT='{{ healthTimeoutSeconds }}'

# nomad-rotator:include safe-paths.sh

emit() { printf '%s\n' "$1" >&3; }

refuse() {
  emit "$(printf '{"ok":false,"stage":"gossip","operation":"%s","attemptId":"%s","reason":"%s"}' \
    "$OPERATION" "$ATTEMPT_ID" "$1")"
  exit 1
}

KEY_PATTERN='^[A-Za-z0-9+/]{43}=$'

# The first 16 hex of sha256 of the key's 32 bytes: all that ever leaves this script of a key.
fingerprint() { printf '%s' "$1" | base64 -d 2>/dev/null | sha256sum | cut -c1-16; }

# A secret's value by version, read with the instance role; only the caller's variable holds it.
read_secret() {
  local version=$1
  if [[ "$version" == none ]]; then
    aws secretsmanager get-secret-value --secret-id "$2" --query SecretString --output text 2>/dev/null
  else
    aws secretsmanager get-secret-value --secret-id "$2" --version-id "$version" \
      --query SecretString --output text 2>/dev/null
  fi
}

TOKEN=''
if [[ "$TOKEN_SECRET_ID" != none ]]; then
  TOKEN=$(read_secret none "$TOKEN_SECRET_ID") || refuse "acl-token-unreadable"
  [[ "$TOKEN" =~ ^[A-Za-z0-9-]{1,128}$ ]] || refuse "acl-token-malformed"
fi

client_auth=()
[[ "$VERIFY_HTTPS_CLIENT" == true ]] && client_auth=(--cert "$CLI_CERT_PATH" --key "$CLI_KEY_PATH")

# Sets STATUS and BODY from one call to the local agent; $3, when given, is sent as {"Key": ...}.
call_agent() {
  local method=$1 path=$2 key=${3:-} answer
  answer=$(curl -sS --max-time 40 -X "$method" --cacert "$CA_PATH" "${client_auth[@]}" \
    -H @<(if [[ -n "$TOKEN" ]]; then printf 'X-Nomad-Token: %s\n' "$TOKEN"; fi) \
    --data-binary @<(if [[ -n "$key" ]]; then printf '{"Key":"%s"}' "$key"; fi) \
    -w '\n%{http_code}' "$NOMAD_ADDR$path") || answer=$'\n000'
  STATUS=${answer##*$'\n'}
  BODY=${answer%$'\n'*}
}

# What a failed keyring call said, held to what Nomad and serf answer: "x/y nodes reported ...".
api_error() {
  if [[ "$BODY" =~ ([0-9]+/[0-9]+\ nodes\ reported\ (success|failure)) ]]; then
    printf '%s' "${BASH_REMATCH[1]}"
  else
    printf 'http-%s' "$STATUS"
  fi
}

# The keys (base64) the cluster's keyring list answered with, one per line; sets LIST_JSON.
CLUSTER_KEYS=()
list_keyring() {
  CLUSTER_KEYS=()
  call_agent GET /v1/agent/keyring/list
  if [[ "$STATUS" != 200 || ! "$BODY" =~ \"NumNodes\":([0-9]+) ]]; then
    LIST_JSON=$(printf '{"ok":false,"error":"%s"}' "$(api_error)")
    return
  fi
  local nodes=${BASH_REMATCH[1]} keys counts='' rest entry
  [[ "$BODY" =~ \"Keys\":\{([^}]*)\} ]] && keys=${BASH_REMATCH[1]} || keys=''
  rest=$keys
  while [[ "$rest" =~ \"([A-Za-z0-9+/=]+)\":([0-9]+) ]]; do
    entry=${BASH_REMATCH[0]}
    CLUSTER_KEYS+=("${BASH_REMATCH[1]}")
    counts+="${counts:+,}\"$(fingerprint "${BASH_REMATCH[1]}")\":${BASH_REMATCH[2]}"
    rest=${rest#*"$entry"}
  done
  LIST_JSON=$(printf '{"ok":true,"counts":{%s},"numNodes":%s}' "$counts" "$nodes")
}

# The keys of this server's serf.keyring, primary first (serf rewrites it in place, not atomically:
# an empty read is tried again).
FILE_KEYS=()
read_keyring_file() {
  FILE_KEYS=()
  [[ -f "$KEYRING_PATH" ]] || return 1
  local text=''
  for _ in 1 2 3 4 5; do
    text=$(cat -- "$KEYRING_PATH" 2>/dev/null) || text=''
    [[ -n "$text" ]] && break
    sleep 0.2
  done
  while [[ "$text" =~ \"([A-Za-z0-9+/=]+)\" ]]; do
    FILE_KEYS+=("${BASH_REMATCH[1]}")
    text=${text#*"${BASH_REMATCH[0]}"}
  done
  return 0
}

key_in_file() {
  local candidate
  for candidate in "${FILE_KEYS[@]}"; do
    if [[ "$(fingerprint "$candidate")" == "$1" ]]; then
      printf '%s' "$candidate"
      return 0
    fi
  done
  return 1
}

report() {
  local mutation=$1 file_json=null members_json health leader='' fingerprints='' candidate
  list_keyring
  if read_keyring_file; then
    for candidate in "${FILE_KEYS[@]}"; do
      fingerprints+="${fingerprints:+,}\"$(fingerprint "$candidate")\""
    done
    file_json="[$fingerprints]"
  fi
  call_agent GET /v1/agent/members
  if [[ "$STATUS" == 200 ]]; then
    local alive=0 total=0 rest=$BODY
    while [[ "$rest" =~ \"Status\":\"([a-z]+)\" ]]; do
      total=$((total + 1))
      [[ "${BASH_REMATCH[1]}" == alive ]] && alive=$((alive + 1))
      rest=${rest#*"${BASH_REMATCH[0]}"}
    done
    members_json=$(printf '{"alive":%d,"total":%d}' "$alive" "$total")
  else
    members_json='{"alive":0,"total":0}'
  fi
  call_agent GET '/v1/agent/health?type=server'
  [[ "$STATUS" == 200 ]] && health=true || health=false
  call_agent GET /v1/status/leader
  [[ "$STATUS" == 200 && "$BODY" =~ ^\"([0-9A-Fa-f.:\[\]]{1,64})\"$ ]] && leader=${BASH_REMATCH[1]}
  emit "$(printf '{"ok":true,"stage":"gossip","operation":"%s","attemptId":"%s","mutation":%s,"list":%s,"keyringFile":%s,"healthy":%s,"members":%s,"leader":"%s"}' \
    "$OPERATION" "$ATTEMPT_ID" "$mutation" "$LIST_JSON" "$file_json" "$health" "$members_json" "$leader")"
}

mutated() { printf '{"ok":true,"changed":%s}' "$1"; }
mutation_failed() { printf '{"ok":false,"error":"%s"}' "$(api_error)"; }

# Takes out of the cluster's keyring every key listed whose fingerprint is $2 (only) or is not
# (all-but); stops at the first refusal. Sets OUTCOME.
remove_cluster_keys() {
  local which=$1 wanted=$2 candidate matches want_match=false
  [[ "$which" == only ]] && want_match=true
  list_keyring
  [[ "$LIST_JSON" == '{"ok":true'* ]] || refuse "keyring-list-failed"
  OUTCOME=$(mutated false)
  for candidate in "${CLUSTER_KEYS[@]}"; do
    [[ "$(fingerprint "$candidate")" == "$wanted" ]] && matches=true || matches=false
    [[ "$matches" == "$want_match" ]] || continue
    call_agent PUT /v1/agent/keyring/remove "$candidate"
    if [[ "$STATUS" != 200 ]]; then
      OUTCOME=$(mutation_failed)
      break
    fi
    OUTCOME=$(mutated true)
  done
  CLUSTER_KEYS=()
}

# The staged key, read by version and checked against the fingerprint the rotator expects.
staged_key() {
  local key
  key=$(read_secret "$VERSION_ID" "$SECRET_ID") || refuse "gossip-key-unreadable"
  [[ "$key" =~ $KEY_PATTERN ]] || refuse "gossip-key-malformed"
  [[ "$(fingerprint "$key")" == "$KEY_FINGERPRINT" ]] || refuse "gossip-key-fingerprint-mismatch"
  printf '%s' "$key"
}

case "$OPERATION" in
  inspect)
    report null
    ;;
  install)
    key=$(staged_key) || exit 1
    call_agent PUT /v1/agent/keyring/install "$key"
    unset key
    if [[ "$STATUS" == 200 ]]; then report "$(mutated true)"; else report "$(mutation_failed)"; fi
    ;;
  use)
    read_keyring_file || refuse "no-keyring-file"
    key=$(key_in_file "$KEY_FINGERPRINT") || refuse "key-not-installed-here"
    # Broadcast even where the key is this server's primary already: another server may lack it.
    call_agent PUT /v1/agent/keyring/use "$key"
    unset key
    if [[ "$STATUS" == 200 ]]; then report "$(mutated true)"; else report "$(mutation_failed)"; fi
    ;;
  remove)
    # Never from under this server: the key kept must already be its primary.
    read_keyring_file || refuse "no-keyring-file"
    [[ "$(fingerprint "${FILE_KEYS[0]}")" == "$KEY_FINGERPRINT" ]] || refuse "kept-key-not-primary-here"
    remove_cluster_keys all-but "$KEY_FINGERPRINT"
    report "$OUTCOME"
    ;;
  discard)
    read_keyring_file || refuse "no-keyring-file"
    [[ "$(fingerprint "${FILE_KEYS[0]}")" != "$KEY_FINGERPRINT" ]] || refuse "discarded-key-is-primary-here"
    remove_cluster_keys only "$KEY_FINGERPRINT"
    report "$OUTCOME"
    ;;
  repair)
    key=$(staged_key) || exit 1
    directory=$(dirname -- "$KEYRING_PATH")
    is_safe_path "$directory" || refuse "unsafe-directory"
    if [[ -L "$KEYRING_PATH" ]] || [[ -e "$KEYRING_PATH" && ! -f "$KEYRING_PATH" ]]; then
      refuse "unsafe-path"
    fi
    owner=$(stat -c '%u:%g' -- "$KEYRING_PATH" 2>/dev/null || printf '0:0')
    systemctl stop nomad || refuse "stop-failed"
    # serf writes its keyring in place; this one is whole before it takes the name.
    staging=$(mktemp -- "$KEYRING_PATH.XXXXXXXX") || refuse "write-failed"
    printf '[\n  "%s"\n]' "$key" >"$staging" || refuse "write-failed"
    unset key
    chown "$owner" -- "$staging" || refuse "write-failed"
    chmod 0600 -- "$staging" || refuse "write-failed"
    mv -f -- "$staging" "$KEYRING_PATH" || refuse "write-failed"
    systemctl start nomad || refuse "start-failed"
    # Rejoined: active, healthy, and the keyring query reaches every expected server.
    outcome='{"ok":false,"error":"not-rejoined"}'
    for ((waited = 0; waited < HEALTH_TIMEOUT; waited += 2)); do
      if systemctl is-active --quiet nomad; then
        call_agent GET '/v1/agent/health?type=server'
        if [[ "$STATUS" == 200 ]]; then
          list_keyring
          if [[ "$LIST_JSON" == *"\"numNodes\":$EXPECTED_SERVERS}" ]]; then
            outcome=$(mutated true)
            break
          fi
        fi
      fi
      sleep 2
    done
    CLUSTER_KEYS=()
    report "$outcome"
    ;;
  persist)
    key=$(staged_key) || exit 1
    directory=$(dirname -- "$ENCRYPT_CONFIG_PATH")
    may_create_dir "$directory" || refuse "unsafe-directory"
    if [[ -L "$ENCRYPT_CONFIG_PATH" ]] || [[ -e "$ENCRYPT_CONFIG_PATH" && ! -f "$ENCRYPT_CONFIG_PATH" ]]; then
      refuse "unsafe-path"
    fi
    ensure_dir "$directory" || refuse "unsafe-directory"
    wanted=$(printf '# Written by nomad-rotator. Nomad reads it only into a fresh data dir; the keyring rules after.\nserver {\n  encrypt = "%s"\n}\n' "$key")
    unset key
    changed=false
    if [[ ! -f "$ENCRYPT_CONFIG_PATH" ]] || [[ "$(cat -- "$ENCRYPT_CONFIG_PATH")" != "$wanted" ]]; then
      staging=$(mktemp -- "$ENCRYPT_CONFIG_PATH.XXXXXXXX") || refuse "write-failed"
      printf '%s\n' "$wanted" >"$staging" || refuse "write-failed"
      chown "$ENCRYPT_CONFIG_OWNER:" -- "$staging" 2>/dev/null || chown "$ENCRYPT_CONFIG_OWNER" -- "$staging" ||
        refuse "chown-failed"
      chmod 0600 -- "$staging"
      mv -f -- "$staging" "$ENCRYPT_CONFIG_PATH" || refuse "write-failed"
      changed=true
    fi
    unset wanted
    report "$(mutated "$changed")"
    ;;
  *)
    refuse "unknown-operation"
    ;;
esac
