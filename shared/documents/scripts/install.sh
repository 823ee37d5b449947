#!/bin/bash
# nomad-rotator install: pick this node's certificates out of the batch by matching the pending keys,
# verify them (key match, chain, names, usages, validity) before any signal, back up the current set,
# write every file atomically, reload (or restart) Nomad, then prove it: the agent serves the new
# certificate, answers health (with the new CLI certificate where verify_https_client is on), a leader
# answers through its reloaded RPC, and the same process still runs a settle interval later. Any
# failure after the first write restores the backup and signals again. Re-running after success
# changes nothing. Private keys are never copied outside their own directories.
# Runs under the SSM agent: root, no HOME, no NOMAD_* variables, working directory /usr/bin.
set -euo pipefail
umask 077
exec 3>&1 1>&2 # stdout carries exactly one JSON line; everything else goes to stderr

ATTEMPT_ID='{{ attemptId }}'
CLUSTER='{{ cluster }}'
ROLE='{{ role }}'
REGION='{{ region }}'
MODE='{{ mode }}'
CERTIFICATES_B64='{{ certificates }}'
CHAIN_B64='{{ chain }}'
CA_BUNDLE_B64='{{ caBundle }}'
MINIMUM_VALIDITY='{{ minimumValiditySeconds }}'
HEALTH_TIMEOUT='{{ healthTimeoutSeconds }}'
SETTLE_SECONDS='{{ settleSeconds }}'
NOMAD_ADDR='{{ nomadAddress }}'
VERIFY_HTTPS_CLIENT='{{ verifyHttpsClient }}'
declare -A FILE_PATH=(
  [agentCert]='{{ agentCertPath }}' [agentKey]='{{ agentKeyPath }}' [ca]='{{ caPath }}'
  [cliCert]='{{ cliCertPath }}' [cliKey]='{{ cliKeyPath }}'
)
declare -A FILE_MODE=(
  [agentCert]='{{ agentCertMode }}' [agentKey]='{{ agentKeyMode }}' [ca]='{{ caMode }}'
  [cliCert]='{{ cliCertMode }}' [cliKey]='{{ cliKeyMode }}'
)
declare -A FILE_OWNER=(
  [agentCert]='{{ agentCertOwner }}' [agentKey]='{{ agentKeyOwner }}' [ca]='{{ caOwner }}'
  [cliCert]='{{ cliCertOwner }}' [cliKey]='{{ cliKeyOwner }}'
)
declare -A FILE_GROUP=(
  [agentCert]='{{ agentCertGroup }}' [agentKey]='{{ agentKeyGroup }}' [ca]='{{ caGroup }}'
  [cliCert]='{{ cliCertGroup }}' [cliKey]='{{ cliKeyGroup }}'
)
FILES=(agentCert agentKey ca cliCert cliKey)
# The root CAs each cluster's nodes accept (SHA-256 of the DER), written in when the stack builds the
# document: no parameter or table item can add one, so a new root is a deliberate deploy.
declare -A TRUSTED_ROOTS=() # nomad-rotator:trusted-roots

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
WROTE_ANY=false
WAS_ACTIVE=false
EXPECTED_PID=0

emit() { printf '%s\n' "$1" >&3; }

# nomad-rotator:include safe-paths.sh

# Fails before anything on disk changed: the node keeps its working set untouched.
refuse() {
  emit "$(printf '{"ok":false,"stage":"install","attemptId":"%s","reason":"%s","detail":"%s","touched":false}' \
    "$ATTEMPT_ID" "$1" "${2:-}")"
  exit 1
}

# --- inputs -----------------------------------------------------------------------------------------

[[ "$NOMAD_ADDR" =~ ^https://([A-Za-z0-9.-]+)(:([0-9]{1,5}))?$ ]] || refuse "bad-nomad-addr"
NOMAD_HOSTPORT="${BASH_REMATCH[1]}:${BASH_REMATCH[3]:-4646}"

decode() { printf '%s' "$1" | base64 -d >"$2" 2>/dev/null; }
# The leaves come gzipped (a wave's certificates share most of their bytes); a command holds at
# most 100 of them, so anything that unpacks past 1 MiB was not packed by the rotator.
MAX_BUNDLE_BYTES=1048576
if ! printf '%s' "$CERTIFICATES_B64" | base64 -d 2>/dev/null | gzip -dc 2>/dev/null |
  head -c "$((MAX_BUNDLE_BYTES + 1))" >"$WORK/bundle.pem"; then
  refuse "bad-encoding" "certificates"
fi
(($(wc -c <"$WORK/bundle.pem") <= MAX_BUNDLE_BYTES)) || refuse "bad-encoding" "certificates"
decode "$CHAIN_B64" "$WORK/chain.pem" || refuse "bad-encoding" "chain"
decode "$CA_BUNDLE_B64" "$WORK/ca.pem" || refuse "bad-encoding" "caBundle"

# Every block of the CA bundle must parse: Nomad >= 1.10.1 exits on a bad ca_file during reload.
openssl crl2pkcs7 -nocrl -certfile "$WORK/ca.pem" 2>/dev/null | openssl pkcs7 -print_certs -noout >/dev/null 2>&1 ||
  refuse "invalid-ca-bundle"
grep -q 'BEGIN CERTIFICATE' "$WORK/ca.pem" || refuse "invalid-ca-bundle"

split_pems() { awk -v dir="$2" '/-----BEGIN CERTIFICATE-----/ { n++ } n { print > (dir "/" n ".pem") }' "$1"; }
fingerprint_of() { openssl x509 -in "$1" -outform DER 2>/dev/null | sha256sum | cut -d' ' -f1; }

# Nomad (Go) takes every certificate of ca_file as a trust anchor, self-signed or not. So each one
# must be a root this cluster's document names, or chain to one of those: an attacker root, or a CA
# it signed, is refused before anything is written.
[[ -n "${TRUSTED_ROOTS[$CLUSTER]+known}" ]] || refuse "unknown-cluster"
mkdir -m 0700 "$WORK/ca-blocks"
split_pems "$WORK/ca.pem" "$WORK/ca-blocks"
: >"$WORK/anchors.pem"
for block in "$WORK"/ca-blocks/*.pem; do
  [[ " ${TRUSTED_ROOTS[$CLUSTER]} " == *" $(fingerprint_of "$block") "* ]] && cat "$block" >>"$WORK/anchors.pem"
done
# The bundle ends with its root, as Vault's ca_chain does: name that one when none is trusted.
[[ -s "$WORK/anchors.pem" ]] || refuse "ca-bundle-root-not-trusted" "$(fingerprint_of "$block")"
for block in "$WORK"/ca-blocks/*.pem; do
  # Lineage, not time: an expired extra CA is no trust anchor an attacker could use.
  openssl verify -no_check_time -CAfile "$WORK/anchors.pem" -untrusted "$WORK/ca.pem" "$block" >/dev/null 2>&1 ||
    refuse "ca-bundle-root-not-trusted" "$(fingerprint_of "$block")"
done

# Every directory written in, and every file replaced, must be safe before anything is touched: no
# link anywhere on the way, directories root's and writable by nobody else.
for file in "${FILES[@]}"; do
  may_create_dir "$(dirname -- "${FILE_PATH[$file]}")" || refuse "unsafe-directory" "$file"
  if [[ -L "${FILE_PATH[$file]}" ]] || [[ -e "${FILE_PATH[$file]}" && ! -f "${FILE_PATH[$file]}" ]]; then
    refuse "unsafe-path" "$file"
  fi
  for kept in .pending .backup; do
    kept="$(dirname -- "${FILE_PATH[$file]}")/$kept"
    if [[ -e "$kept" || -L "$kept" ]] && ! is_safe_dir "$kept" 077; then
      refuse "unsafe-${kept##*/.}-dir" "$file"
    fi
  done
done

mkdir -m 0700 "$WORK/candidates"
split_pems "$WORK/bundle.pem" "$WORK/candidates"

public_key_digest() { openssl pkey -pubin -outform DER 2>/dev/null | sha256sum | cut -d' ' -f1; }
key_digest() { openssl pkey -in "$1" -pubout 2>/dev/null | public_key_digest; }
cert_digest() { openssl x509 -in "$1" -noout -pubkey 2>/dev/null | public_key_digest; }
serial_of() { openssl x509 -in "$1" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f'; }
epoch_of() { date -u -d "$(openssl x509 -in "$1" -noout "-$2" | cut -d= -f2)" +%s; }

# Finds the certificate of the batch whose public key matches a key; prints its path.
find_certificate_for_key() {
  local key=$1 wanted candidate
  [[ -s "$key" && ! -L "$key" ]] || return 1
  wanted=$(key_digest "$key")
  for candidate in "$WORK"/candidates/*.pem; do
    [[ -e "$candidate" ]] || continue
    if [[ "$(cert_digest "$candidate")" == "$wanted" ]]; then
      printf '%s' "$candidate"
      return 0
    fi
  done
  return 1
}

pending_dir() { printf '%s/.pending' "$(dirname "${FILE_PATH[$1]}")"; }

has_san() { openssl x509 -in "$1" -noout -ext subjectAltName 2>/dev/null | grep -Eq "(^|[ ,])$2(,|$)"; }
has_usage() { openssl x509 -in "$1" -noout -ext extendedKeyUsage 2>/dev/null | grep -q "$2"; }

# Verifies one leaf: chain to the bundle, expected DNS name, usages and a sane validity window.
verify_leaf() {
  local cert=$1 dns=$2 kind=$3
  openssl verify -CAfile "$WORK/ca.pem" -untrusted "$WORK/chain.pem" "$cert" >/dev/null 2>&1 ||
    refuse "chain-verification-failed" "$kind"
  has_san "$cert" "DNS:${dns//./\\.}" || refuse "wrong-names" "$kind"
  has_usage "$cert" 'TLS Web Client Authentication' || refuse "wrong-usage" "$kind"
  if [[ "$kind" != cli ]]; then
    has_usage "$cert" 'TLS Web Server Authentication' || refuse "wrong-usage" "$kind"
    has_san "$cert" 'DNS:localhost' || refuse "wrong-names" "$kind"
    has_san "$cert" 'IP Address:127\.0\.0\.1' || refuse "wrong-names" "$kind"
  fi
  openssl x509 -in "$cert" -noout -checkend "$MINIMUM_VALIDITY" >/dev/null || refuse "validity-too-short" "$kind"
  (($(epoch_of "$cert" startdate) <= $(date -u +%s) + 300)) || refuse "not-yet-valid" "$kind"
}

# --- choose this node's material ---------------------------------------------------------------------

AGENT_PENDING=$(pending_dir agentKey)
CLI_PENDING=$(pending_dir cliKey)
if [[ "$(cat "$AGENT_PENDING/attempt" 2>/dev/null || true)" == "$ATTEMPT_ID" ]] &&
  agent_leaf=$(find_certificate_for_key "$AGENT_PENDING/agent.key") &&
  cli_leaf=$(find_certificate_for_key "$CLI_PENDING/cli.key"); then
  agent_key="$AGENT_PENDING/agent.key"
  cli_key="$CLI_PENDING/cli.key"
elif agent_leaf=$(find_certificate_for_key "${FILE_PATH[agentKey]}") &&
  cli_leaf=$(find_certificate_for_key "${FILE_PATH[cliKey]}"); then
  # The batch holds the set this node already runs: a re-run after success.
  agent_key="${FILE_PATH[agentKey]}"
  cli_key="${FILE_PATH[cliKey]}"
else
  refuse "no-certificate-for-this-node"
fi

verify_leaf "$agent_leaf" "${ROLE}.${REGION}.nomad" agent
verify_leaf "$cli_leaf" "cli.${REGION}.nomad" cli

# The public files are assembled in the work directory; the keys are read where they are (their
# pending directory, or the installed path on a re-run), so no copy of a key exists anywhere else.
mkdir -m 0700 "$WORK/new"
cat "$agent_leaf" "$WORK/chain.pem" >"$WORK/new/agentCert"
cp "$WORK/ca.pem" "$WORK/new/ca"
cat "$cli_leaf" "$WORK/chain.pem" >"$WORK/new/cliCert"
declare -A SOURCE=(
  [agentCert]="$WORK/new/agentCert" [agentKey]="$agent_key" [ca]="$WORK/new/ca"
  [cliCert]="$WORK/new/cliCert" [cliKey]="$cli_key"
)
NEW_SERIAL=$(serial_of "$agent_leaf")

# --- proof -------------------------------------------------------------------------------------------

# Nomad asks for a client certificate on HTTPS only with verify_https_client, and checks no name on it.
openssl_client_auth=()
curl_client_auth=()
if [[ "$VERIFY_HTTPS_CLIENT" == true ]]; then
  openssl_client_auth=(-cert "${FILE_PATH[cliCert]}" -key "${FILE_PATH[cliKey]}")
  curl_client_auth=(--cert "${FILE_PATH[cliCert]}" --key "${FILE_PATH[cliKey]}")
fi

served_serial() {
  timeout 5 openssl s_client -connect "$NOMAD_HOSTPORT" -CAfile "${FILE_PATH[ca]}" \
    "${openssl_client_auth[@]}" </dev/null 2>/dev/null |
    openssl x509 -noout -serial 2>/dev/null | cut -d= -f2 | tr 'A-F' 'a-f'
}

nomad_get() {
  curl -sf --max-time 5 --cacert "${FILE_PATH[ca]}" "${curl_client_auth[@]}" "$NOMAD_ADDR$1"
}

main_pid() { systemctl show -p MainPID --value nomad 2>/dev/null || printf '0'; }

# A server's health and leader need a Raft quorum, which a cluster's first server cannot have on its
# own; so a server proves them only where its agent ran before. A client's health needs only a known
# server, and its leader query goes through its own reloaded RPC, so a client always proves both.
if [[ "$ROLE" == client ]] || systemctl is-active --quiet nomad; then REQUIRE_LEADER=true; else REQUIRE_LEADER=false; fi

# The agent serves the expected serial, answers health, and a leader answers through its RPC.
# `systemctl reload` exiting 0 proves only that a signal was sent.
answers() {
  [[ "$(served_serial)" == "$1" ]] || return 1
  $REQUIRE_LEADER || return 0
  nomad_get /v1/agent/health >/dev/null || return 1
  local leader
  leader=$(nomad_get /v1/status/leader) || return 1
  [[ -n "$leader" && "$leader" != '""' ]]
}

wait_until_answers() {
  local deadline=$2
  until answers "$1"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

# Nomad serves the new leaf before the rest of a reload, which can still fail and exit (>= 1.10.1
# on a bad CA): the proof holds only if the process that answered is the one that was signalled and
# it still runs, and answers, a settle interval later.
wait_until_proven() {
  local deadline=$((SECONDS + $2))
  wait_until_answers "$1" "$deadline" || return 1
  sleep "$SETTLE_SECONDS"
  [[ "$EXPECTED_PID" != 0 && "$(main_pid)" == "$EXPECTED_PID" ]] || return 1
  systemctl is-active --quiet nomad || return 1
  wait_until_answers "$1" $((deadline + SETTLE_SECONDS))
}

report_success() {
  local changed=$1 action=$2
  emit "$(printf '{"ok":true,"stage":"install","attemptId":"%s","changed":%s,"action":"%s","servedSerial":"%s","agent":{"serial":"%s","notBefore":%s,"notAfter":%s},"cli":{"serial":"%s","notBefore":%s,"notAfter":%s}}' \
    "$ATTEMPT_ID" "$changed" "$action" "$NEW_SERIAL" \
    "$NEW_SERIAL" "$(epoch_of "$agent_leaf" startdate)" "$(epoch_of "$agent_leaf" enddate)" \
    "$(serial_of "$cli_leaf")" "$(epoch_of "$cli_leaf" startdate)" "$(epoch_of "$cli_leaf" enddate)")"
}

# --- unchanged? ---------------------------------------------------------------------------------------

unchanged=true
for file in "${FILES[@]}"; do
  cmp -s "${SOURCE[$file]}" "${FILE_PATH[$file]}" || unchanged=false
done
if $unchanged; then
  EXPECTED_PID=$(main_pid)
  wait_until_proven "$NEW_SERIAL" "$HEALTH_TIMEOUT" || refuse "installed-set-not-served"
  rm -rf "$AGENT_PENDING" "$CLI_PENDING"
  report_success false none
  exit 0
fi

# --- install with rollback -------------------------------------------------------------------------

backup_dir() { printf '%s/.backup' "$(dirname "${FILE_PATH[$1]}")"; }

atomic_write() {
  local source=$1 file=$2 target tmp
  target=${FILE_PATH[$file]}
  ensure_dir "$(dirname -- "$target")" || return 1
  [[ ! -L "$target" ]] || return 1
  tmp=$(mktemp "$(dirname "$target")/.nomad-rotator.XXXXXX") || return 1
  if ! { cat "$source" >"$tmp" && chown "${FILE_OWNER[$file]}:${FILE_GROUP[$file]}" "$tmp" &&
    chmod "${FILE_MODE[$file]}" "$tmp" && sync "$tmp" && mv -f "$tmp" "$target"; }; then
    rm -f "$tmp"
    return 1
  fi
  sync "$(dirname "$target")"
}

# Sets EXPECTED_PID: the process a reload signals, or the one a (re)start leaves running.
signal_nomad() {
  if [[ "$1" == restart ]] || ! systemctl is-active --quiet nomad; then
    # After a crash loop systemd's start limit refuses the start until the failure is reset.
    systemctl restart nomad || { systemctl reset-failed nomad && systemctl restart nomad; } || return 1
    EXPECTED_PID=$(main_pid)
  else
    EXPECTED_PID=$(main_pid)
    systemctl reload nomad
  fi
}

rollback() {
  local reason=$1 file restored=true previous_serial=""
  if $WROTE_ANY; then
    for file in "${FILES[@]}"; do
      if [[ -e "$(backup_dir "$file")/$file" ]]; then
        # A file the failed install never replaced needs no write, which may fail again the same way.
        cmp -s "$(backup_dir "$file")/$file" "${FILE_PATH[$file]}" ||
          atomic_write "$(backup_dir "$file")/$file" "$file" || restored=false
      else
        rm -f "${FILE_PATH[$file]}"
      fi
    done
    if $WAS_ACTIVE && [[ -s "${FILE_PATH[agentCert]}" ]]; then
      previous_serial=$(serial_of "${FILE_PATH[agentCert]}")
      signal_nomad "$MODE" || restored=false
      wait_until_proven "$previous_serial" "$HEALTH_TIMEOUT" || restored=false
    elif ! $WAS_ACTIVE; then
      systemctl stop nomad || true
    fi
    if $restored; then
      for file in "${FILES[@]}"; do
        rm -rf "$(backup_dir "$file")"
      done
    fi
  fi
  emit "$(printf '{"ok":false,"stage":"install","attemptId":"%s","reason":"%s","touched":%s,"restored":%s,"servedSerial":"%s"}' \
    "$ATTEMPT_ID" "$reason" "$WROTE_ANY" "$restored" "$previous_serial")"
  exit 1
}

systemctl is-active --quiet nomad && WAS_ACTIVE=true
# One backup per directory, made in a fresh 0700 directory and renamed onto .backup once complete;
# a .backup left by an interrupted run (checked above) is replaced.
declare -A BACKUP_FRESH=()
for file in "${FILES[@]}"; do
  [[ -e "${FILE_PATH[$file]}" ]] || continue
  backup=$(backup_dir "$file")
  if [[ -z "${BACKUP_FRESH[$backup]:-}" ]]; then
    remove_leftovers "$backup"
    BACKUP_FRESH[$backup]=$(fresh_dir "$backup") || refuse "backup-failed" "$file"
  fi
  cp -p -- "${FILE_PATH[$file]}" "${BACKUP_FRESH[$backup]}/$file" 2>/dev/null || refuse "backup-failed" "$file"
done
for backup in "${!BACKUP_FRESH[@]}"; do
  rm -rf -- "$backup"
  put_in_place "${BACKUP_FRESH[$backup]}" "$backup" || refuse "backup-failed" "${backup##*/}"
done

for file in "${FILES[@]}"; do
  WROTE_ANY=true
  atomic_write "${SOURCE[$file]}" "$file" || rollback "write-failed"
done

signal_nomad "$MODE" || rollback "signal-failed"
wait_until_proven "$NEW_SERIAL" "$HEALTH_TIMEOUT" || rollback "new-certificate-not-served"

for file in "${FILES[@]}"; do
  rm -rf "$(backup_dir "$file")"
done
rm -rf "$AGENT_PENDING" "$CLI_PENDING"
if [[ "$MODE" == restart ]] || ! $WAS_ACTIVE; then action=restart; else action=reload; fi
report_success true "$action"
