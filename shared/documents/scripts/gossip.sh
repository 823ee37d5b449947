#!/bin/bash
# nomad-rotator gossip: one step of a gossip key rotation on a Nomad server, then this server's view
# of the keyring, by fingerprint only. inspect changes nothing; install reads the staged key from
# Secrets Manager with the instance role and installs it; use makes an installed key the primary;
# remove takes every other key out of the cluster's keyring; discard takes a rotation's own key out
# again (a halted rotation that never reached use: no server has it as primary); repair brings back
# a server the cluster's key no longer reaches (stop, serf.keyring rewritten atomically to the
# current key alone, start, then proof that it rejoined every server); restart restarts a healthy
# server behind the gate (the cluster whole and able to lose one server before; back as a healthy
# voter, held for the stabilization time, after); enable brings a server that gossips in clear up
# encrypted (autopilot's dead-server cleanup off, `encrypt` written, restart, then Raft's word that
# it is back, since serf cannot reach the servers still in clear; the last server waits for the full
# gate and puts the cleanup back); persist writes the key into a 0600 `encrypt` config file that
# only a fresh data dir reads. Keys and the ACL token reach the local
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
STABILIZATION='{{ stabilizationSeconds }}'
LAST_SERVER='{{ lastServer }}'
RESTORE_CLEANUP='{{ restoreCleanup }}'

# nomad-rotator:include safe-paths.sh

emit() { printf '%s\n' "$1" >&3; }

refuse() {
  local detail=''
  [[ -n "${2:-}" ]] && detail=$(printf ',"detail":"%s"' "$2")
  emit "$(printf '{"ok":false,"stage":"gossip","operation":"%s","attemptId":"%s","reason":"%s"%s}' \
    "$OPERATION" "$ATTEMPT_ID" "$1" "$detail")"
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

# Sets STATUS and BODY from one call to the local agent; $3, when given, is the request body
# (`key_body` for a key). Token and body go through file descriptors, never argv.
call_agent() {
  local method=$1 path=$2 body=${3:-} answer
  answer=$(curl -sS --max-time 40 -X "$method" --cacert "$CA_PATH" "${client_auth[@]}" \
    -H @<(if [[ -n "$TOKEN" ]]; then printf 'X-Nomad-Token: %s\n' "$TOKEN"; fi) \
    --data-binary @<(printf '%s' "$body") \
    -w '\n%{http_code}' "$NOMAD_ADDR$path") || answer=$'\n000'
  STATUS=${answer##*$'\n'}
  BODY=${answer%$'\n'*}
}

key_body() { printf '{"Key":"%s"}' "$1"; }

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

# This server's serf view: ALIVE and TOTAL members, and SELF, its own member name
# (`<node name>.<region>`, the name autopilot lists it by).
count_members() {
  ALIVE=0 TOTAL=0 SELF=''
  call_agent GET /v1/agent/members
  [[ "$STATUS" == 200 ]] || return 0
  local rest=$BODY
  if [[ "$BODY" =~ \"ServerName\":\"([A-Za-z0-9._-]{1,128})\" ]]; then
    SELF=${BASH_REMATCH[1]}
    [[ "$BODY" =~ \"ServerRegion\":\"([A-Za-z0-9._-]{1,128})\" ]] && SELF+=".${BASH_REMATCH[1]}" || SELF=''
  fi
  while [[ "$rest" =~ \"Status\":\"([a-z]+)\" ]]; do
    TOTAL=$((TOTAL + 1))
    [[ "${BASH_REMATCH[1]}" == alive ]] && ALIVE=$((ALIVE + 1))
    rest=${rest#*"${BASH_REMATCH[0]}"}
  done
}

# health?type=server makes a Status.Leader RPC to the leader: 200 only while there is one.
server_healthy() {
  call_agent GET '/v1/agent/health?type=server'
  [[ "$STATUS" == 200 ]]
}

# An RPC address as /v1/status/leader answers it (JSON string, a newline after it); `]` leads the
# bracket expression, where a backslash would be literal.
LEADER_PATTERN='^"([]0-9A-Fa-f.:[]{1,64})"$'

# The leader's RPC address this server reports, `?stale=true` for its own Raft view; empty without.
current_leader() {
  local body
  call_agent GET "/v1/status/leader${1:+?stale=true}"
  body=${BODY%$'\n'}
  if [[ "$STATUS" == 200 && "$body" =~ $LEADER_PATTERN ]]; then
    printf '%s' "${BASH_REMATCH[1]}"
  fi
}

# The leader's autopilot view (operator:read): AUTOPILOT_STATUS (200 healthy, 429 not),
# AUTOPILOT_HEALTHY, TOLERANCE, and this server's own entry as SELF_VOTER, SELF_HEALTHY, SELF_LEADER
# (false when autopilot does not list it). Needs SELF from count_members. False when unreadable.
autopilot_health() {
  AUTOPILOT_HEALTHY=false TOLERANCE=0 SELF_VOTER=false SELF_HEALTHY=false SELF_LEADER=false
  call_agent GET /v1/operator/autopilot/health
  AUTOPILOT_STATUS=$STATUS
  [[ "$STATUS" == 200 || "$STATUS" == 429 ]] || return 1
  [[ "$BODY" =~ \"FailureTolerance\":([0-9]{1,4}) ]] || return 1
  TOLERANCE=${BASH_REMATCH[1]}
  [[ "$STATUS" == 200 ]] && AUTOPILOT_HEALTHY=true
  [[ -n "$SELF" ]] || return 0
  local open='\{[^{}]*"Name":"' entry
  [[ "$BODY" =~ $open"$SELF"\"[^{}]*\} ]] || return 0
  entry=${BASH_REMATCH[0]}
  [[ "$entry" =~ \"Voter\":true ]] && SELF_VOTER=true
  [[ "$entry" =~ \"Healthy\":true ]] && SELF_HEALTHY=true
  [[ "$entry" =~ \"Leader\":true ]] && SELF_LEADER=true
  return 0
}

# The gate around a restart: every expected server alive in this server's view and in the keyring
# query, a leader, and autopilot healthy with one server to spare, this one a healthy voter.
# Sets GATE_DETAIL to the first fact that does not hold.
gate_open() {
  GATE_DETAIL=''
  server_healthy || { GATE_DETAIL=no-leader && return 1; }
  [[ -n "$(current_leader)" ]] || { GATE_DETAIL=no-leader && return 1; }
  count_members
  if ((ALIVE != EXPECTED_SERVERS || TOTAL != EXPECTED_SERVERS)); then
    GATE_DETAIL="members-$ALIVE-of-$EXPECTED_SERVERS-alive" && return 1
  fi
  list_keyring
  CLUSTER_KEYS=()
  if [[ "$LIST_JSON" != *"\"numNodes\":$EXPECTED_SERVERS}" ]]; then
    GATE_DETAIL=keyring-not-on-every-server && return 1
  fi
  autopilot_health || { GATE_DETAIL="autopilot-http-$AUTOPILOT_STATUS" && return 1; }
  ((TOLERANCE >= 1)) || { GATE_DETAIL="failure-tolerance-$TOLERANCE" && return 1; }
  [[ "$SELF_VOTER" == true ]] || { GATE_DETAIL=not-a-voter && return 1; }
  [[ "$SELF_HEALTHY" == true ]] || { GATE_DETAIL=not-healthy-in-autopilot && return 1; }
  return 0
}

# After a start: the unit active and the check $1 (a function) passing, held STABILIZATION seconds
# without a break, within HEALTH_TIMEOUT. Sets OUTCOME.
hold_stable() {
  local check=$1 deadline=$((SECONDS + HEALTH_TIMEOUT)) open_since=-1
  OUTCOME='{"ok":false,"error":"not-stable"}'
  while ((SECONDS < deadline)); do
    if systemctl is-active --quiet nomad && "$check"; then
      ((open_since >= 0)) || open_since=$SECONDS
      if ((SECONDS - open_since >= STABILIZATION)); then
        OUTCOME=$(mutated true)
        return 0
      fi
    else
      open_since=-1
    fi
    sleep 2
  done
  return 1
}

# Raft's view from this server alone (`?stale=true`: a server whose serf cannot reach the leader
# cannot forward): a leader known, EXPECTED_SERVERS voters, this server (SELF) one of them.
raft_settled() {
  GATE_DETAIL=''
  [[ -n "$(current_leader stale)" ]] || { GATE_DETAIL=no-raft-leader && return 1; }
  count_members
  [[ -n "$SELF" ]] || { GATE_DETAIL=no-member-name && return 1; }
  call_agent GET '/v1/operator/raft/configuration?stale=true'
  [[ "$STATUS" == 200 ]] || { GATE_DETAIL="raft-configuration-http-$STATUS" && return 1; }
  local rest=$BODY entry voters=0 self_voter=false
  while [[ "$rest" =~ \{[^{}]*\"Voter\":(true|false)[^{}]*\} ]]; do
    entry=${BASH_REMATCH[0]}
    if [[ "${BASH_REMATCH[1]}" == true ]]; then
      voters=$((voters + 1))
      [[ "$entry" == *"\"Node\":\"$SELF\""* ]] && self_voter=true
    fi
    rest=${rest#*"$entry"}
  done
  ((voters == EXPECTED_SERVERS)) || { GATE_DETAIL="raft-voters-$voters-of-$EXPECTED_SERVERS" && return 1; }
  [[ "$self_voter" == true ]] || { GATE_DETAIL=not-a-raft-voter && return 1; }
}

# FILE_KEYS is the staged key (KEY_FINGERPRINT) alone.
file_holds_only_staged_key() {
  ((${#FILE_KEYS[@]} == 1)) && [[ "$(fingerprint "${FILE_KEYS[0]}")" == "$KEY_FINGERPRINT" ]]
}

# After an enable restart of a server that is not the last: Raft settled and its keyring seeded
# from `encrypt` with the staged key alone (serf cannot reach the servers still in clear).
raft_settled_and_seeded() {
  raft_settled && read_keyring_file && file_holds_only_staged_key
}

# Autopilot's configuration (operator:read): its CleanupDeadServers as CLEANUP, the whole answer in
# BODY; false when unreadable.
read_dead_server_cleanup() {
  call_agent GET /v1/operator/autopilot/configuration
  [[ "$STATUS" == 200 && "$BODY" =~ \"CleanupDeadServers\":(true|false) ]] || return 1
  CLEANUP=${BASH_REMATCH[1]}
}

# Autopilot's CleanupDeadServers set to $1 (true|false). Nomad's PUT replaces the whole
# configuration, so the one field is changed in what GET answered and the rest sent back as it was.
set_dead_server_cleanup() {
  local wanted=$1 current
  read_dead_server_cleanup || return 1
  current=$CLEANUP
  [[ "$current" == "$wanted" ]] && return 0
  call_agent PUT /v1/operator/autopilot/configuration "${BODY/\"CleanupDeadServers\":$current/\"CleanupDeadServers\":$wanted}"
  [[ "$STATUS" == 200 ]]
}

# `server { encrypt = "<key>" }` in ENCRYPT_CONFIG_PATH, 0600, atomically; CHANGED says whether it
# was written. Refuses (and exits) on an unsafe path.
write_encrypt_config() {
  local wanted directory staging
  directory=$(dirname -- "$ENCRYPT_CONFIG_PATH")
  may_create_dir "$directory" || refuse "unsafe-directory"
  if [[ -L "$ENCRYPT_CONFIG_PATH" ]] || [[ -e "$ENCRYPT_CONFIG_PATH" && ! -f "$ENCRYPT_CONFIG_PATH" ]]; then
    refuse "unsafe-path"
  fi
  ensure_dir "$directory" || refuse "unsafe-directory"
  wanted=$(printf '# Written by nomad-rotator. Nomad reads it only into a fresh data dir; the keyring rules after.\nserver {\n  encrypt = "%s"\n}\n' "$1")
  CHANGED=false
  if [[ ! -f "$ENCRYPT_CONFIG_PATH" ]] || [[ "$(cat -- "$ENCRYPT_CONFIG_PATH")" != "$wanted" ]]; then
    staging=$(mktemp -- "$ENCRYPT_CONFIG_PATH.XXXXXXXX") || refuse "write-failed"
    printf '%s\n' "$wanted" >"$staging" || refuse "write-failed"
    chown "$ENCRYPT_CONFIG_OWNER:" -- "$staging" 2>/dev/null || chown "$ENCRYPT_CONFIG_OWNER" -- "$staging" ||
      refuse "chown-failed"
    chmod 0600 -- "$staging"
    mv -f -- "$staging" "$ENCRYPT_CONFIG_PATH" || refuse "write-failed"
    CHANGED=true
  fi
}

report() {
  local mutation=$1 file_json=null members_json health leader fingerprints='' candidate autopilot_json leader_here cleanup
  list_keyring
  if read_keyring_file; then
    for candidate in "${FILE_KEYS[@]}"; do
      fingerprints+="${fingerprints:+,}\"$(fingerprint "$candidate")\""
    done
    file_json="[$fingerprints]"
  fi
  count_members
  members_json=$(printf '{"alive":%d,"total":%d}' "$ALIVE" "$TOTAL")
  server_healthy && health=true || health=false
  leader=$(current_leader)
  autopilot_json=null
  leader_here=null
  if autopilot_health; then
    cleanup=null
    read_dead_server_cleanup && cleanup=$CLEANUP
    autopilot_json=$(printf '{"healthy":%s,"failureTolerance":%d,"cleanupDeadServers":%s}' \
      "$AUTOPILOT_HEALTHY" "$TOLERANCE" "$cleanup")
    leader_here=$SELF_LEADER
  fi
  emit "$(printf '{"ok":true,"stage":"gossip","operation":"%s","attemptId":"%s","mutation":%s,"list":%s,"keyringFile":%s,"healthy":%s,"members":%s,"leader":"%s","autopilot":%s,"leaderHere":%s}' \
    "$OPERATION" "$ATTEMPT_ID" "$mutation" "$LIST_JSON" "$file_json" "$health" "$members_json" "$leader" \
    "$autopilot_json" "$leader_here")"
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
    call_agent PUT /v1/agent/keyring/remove "$(key_body "$candidate")"
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
    call_agent PUT /v1/agent/keyring/install "$(key_body "$key")"
    unset key
    if [[ "$STATUS" == 200 ]]; then report "$(mutated true)"; else report "$(mutation_failed)"; fi
    ;;
  use)
    read_keyring_file || refuse "no-keyring-file"
    key=$(key_in_file "$KEY_FINGERPRINT") || refuse "key-not-installed-here"
    # Broadcast even where the key is this server's primary already: another server may lack it.
    call_agent PUT /v1/agent/keyring/use "$(key_body "$key")"
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
    # Rejoined: the gate a restart ends on, which the cut-off server could not pass before.
    hold_stable gate_open || true
    report "$OUTCOME"
    ;;
  restart)
    gate_open || refuse "gate-closed" "$GATE_DETAIL"
    was_leader=$SELF_LEADER
    systemctl restart nomad || refuse "restart-failed"
    if hold_stable gate_open; then
      OUTCOME=$(printf '{"ok":true,"changed":true,"wasLeader":%s}' "$was_leader")
    fi
    report "$OUTCOME"
    ;;
  enable)
    key=$(staged_key) || exit 1
    if read_keyring_file; then
      # A run cut off after the restart: this server is up on the staged key already.
      file_holds_only_staged_key || refuse "keyring-file-exists"
    else
      # Still in clear, so still gossiping with the leader: health and Raft both hold.
      server_healthy || refuse "gate-closed" "no-leader"
      raft_settled || refuse "gate-closed" "$GATE_DETAIL"
      # The restarted servers look failed to those in clear until the leader is encrypted: autopilot
      # must not prune them meanwhile.
      set_dead_server_cleanup false || refuse "autopilot-config-failed" "http-$STATUS"
      write_encrypt_config "$key"
      systemctl restart nomad || refuse "restart-failed"
    fi
    unset key
    if [[ "$LAST_SERVER" == true ]]; then
      if hold_stable gate_open && [[ "$RESTORE_CLEANUP" == true ]]; then
        set_dead_server_cleanup true || OUTCOME='{"ok":false,"error":"autopilot-not-restored"}'
      fi
    else
      hold_stable raft_settled_and_seeded || true
    fi
    report "$OUTCOME"
    ;;
  persist)
    key=$(staged_key) || exit 1
    write_encrypt_config "$key"
    unset key
    report "$(mutated "$CHANGED")"
    ;;
  *)
    refuse "unknown-operation"
    ;;
esac
