#!/bin/bash
# nomad-rotator prepare: make a fresh private key and CSR for the agent and the CLI certificate under
# <dir>/.pending/ (created fresh, never through a link or in a directory others can write) and print
# the CSRs. Keys never leave the node. Re-running with the same attempt id reuses the pending keys,
# so a duplicate command changes nothing.
set -euo pipefail
umask 077

ATTEMPT_ID='{{ attemptId }}'
KEY_TYPE='{{ keyType }}'
AGENT_KEY_PATH='{{ agentKeyPath }}'
AGENT_CERT_PATH='{{ agentCertPath }}'
CLI_KEY_PATH='{{ cliKeyPath }}'
CLI_CERT_PATH='{{ cliCertPath }}'

fail() {
  printf '{"ok":false,"stage":"prepare","reason":"%s","detail":"%s","attemptId":"%s"}\n' "$1" "${2:-}" "$ATTEMPT_ID"
  exit 1
}

# nomad-rotator:include safe-paths.sh

command -v openssl >/dev/null 2>&1 || fail "openssl-missing"

generate_key() {
  local target=$1
  case "$KEY_TYPE" in
    ec-p256) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$target" 2>/dev/null ;;
    rsa-2048) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$target" 2>/dev/null ;;
    *) return 1 ;;
  esac
}

# Makes <dir>/.pending hold a fresh key for each name given, for this attempt. A pending directory
# of this attempt with those keys is reused, so a duplicate command changes nothing. Otherwise the
# keys are made in a new 0700 directory of a random name and that is renamed onto .pending: nothing
# is ever written into a directory someone else may have prepared, or through a link.
prepare_dir() {
  local dir=$1 label=$2 name fresh reuse=true
  shift 2
  local pending="$dir/.pending"
  ensure_dir "$dir" || fail "unsafe-directory" "$label"
  remove_leftovers "$pending"
  if [[ -e "$pending" || -L "$pending" ]]; then
    is_safe_dir "$pending" 077 || fail "unsafe-pending-dir" "$label"
    [[ ! -L "$pending/attempt" && "$(cat "$pending/attempt" 2>/dev/null || true)" == "$ATTEMPT_ID" ]] || reuse=false
    for name; do
      [[ -f "$pending/$name.key" && ! -L "$pending/$name.key" && -s "$pending/$name.key" ]] || reuse=false
    done
    $reuse && return 0
  fi
  fresh=$(fresh_dir "$pending") || fail "unsafe-pending-dir" "$label"
  for name; do
    generate_key "$fresh/$name.key" || { rm -rf -- "$fresh"; fail "$name-key-generation-failed"; }
  done
  printf '%s\n' "$ATTEMPT_ID" >"$fresh/attempt"
  rm -rf -- "$pending"
  put_in_place "$fresh" "$pending" || { rm -rf -- "$fresh"; fail "unsafe-pending-dir" "$label"; }
}

# The CSR of a pending key as one base64 line of its DER: with RSA-2048 keys two PEM CSRs pass the
# 2,500 characters of an output that ListCommandInvocations carries, and each node whose line it
# cuts is then read again on its own.
csr_of() {
  local pending=$1 name=$2
  openssl req -new -key "$pending/$name.key" -subj "/CN=nomad-rotator-${name}" -outform DER 2>/dev/null | base64 -w0
}

# Facts about the certificate currently installed, so the rotator sees what the node really holds.
describe_current() {
  local cert=$1
  if [[ -s "$cert" ]] && openssl x509 -in "$cert" -noout >/dev/null 2>&1; then
    local serial end
    serial=$(openssl x509 -in "$cert" -noout -serial | cut -d= -f2)
    end=$(date -u -d "$(openssl x509 -in "$cert" -noout -enddate | cut -d= -f2)" +%s)
    printf '{"serial":"%s","notAfter":%s}' "$serial" "$end"
  else
    printf 'null'
  fi
}

AGENT_DIR=$(dirname -- "$AGENT_KEY_PATH")
CLI_DIR=$(dirname -- "$CLI_KEY_PATH")
if [[ "$AGENT_DIR" == "$CLI_DIR" ]]; then
  prepare_dir "$AGENT_DIR" agentKey agent cli
else
  prepare_dir "$AGENT_DIR" agentKey agent
  prepare_dir "$CLI_DIR" cliKey cli
fi
if ! agent_csr=$(csr_of "$AGENT_DIR/.pending" agent) || [[ -z "$agent_csr" ]]; then fail "agent-key-generation-failed"; fi
if ! cli_csr=$(csr_of "$CLI_DIR/.pending" cli) || [[ -z "$cli_csr" ]]; then fail "cli-key-generation-failed"; fi

printf '{"ok":true,"stage":"prepare","attemptId":"%s","agentCsr":"%s","cliCsr":"%s","current":{"agent":%s,"cli":%s}}\n' \
  "$ATTEMPT_ID" "$agent_csr" "$cli_csr" "$(describe_current "$AGENT_CERT_PATH")" "$(describe_current "$CLI_CERT_PATH")"
