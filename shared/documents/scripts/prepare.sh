#!/bin/bash
# nomad-rotator prepare: make a fresh private key and CSR for the agent and the CLI certificate under
# <dir>/.pending/ and print the CSRs. Keys never leave the node. Re-running with the same attempt id
# reuses the pending keys, so a duplicate command changes nothing.
set -euo pipefail
umask 077

ATTEMPT_ID='{{ attemptId }}'
KEY_TYPE='{{ keyType }}'
AGENT_KEY_PATH='{{ agentKeyPath }}'
AGENT_CERT_PATH='{{ agentCertPath }}'
CLI_KEY_PATH='{{ cliKeyPath }}'
CLI_CERT_PATH='{{ cliCertPath }}'

fail() {
  printf '{"ok":false,"stage":"prepare","reason":"%s","attemptId":"%s"}\n' "$1" "$ATTEMPT_ID"
  exit 1
}

command -v openssl >/dev/null 2>&1 || fail "openssl-missing"

generate_key() {
  local target=$1
  case "$KEY_TYPE" in
    ec-p256) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$target" 2>/dev/null ;;
    rsa-2048) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$target" 2>/dev/null ;;
    *) return 1 ;;
  esac
}

# Prepares one key + CSR pair in <dir of key>/.pending and prints the CSR as one base64 line.
prepare_pair() {
  local key_path=$1 name=$2
  local pending
  pending="$(dirname "$key_path")/.pending"
  # The certificate directory stays traversable for an agent that does not run as root.
  (umask 022 && mkdir -p "$(dirname "$key_path")")
  mkdir -p "$pending"
  chmod 0700 "$pending"
  if [[ "$(cat "$pending/attempt" 2>/dev/null || true)" != "$ATTEMPT_ID" || ! -s "$pending/$name.key" ]]; then
    rm -f "$pending/$name.key" "$pending/$name.csr"
    generate_key "$pending/$name.key.tmp" || return 1
    mv -f "$pending/$name.key.tmp" "$pending/$name.key"
  fi
  openssl req -new -key "$pending/$name.key" -subj "/CN=nomad-rotator-${name}" -out "$pending/$name.csr" 2>/dev/null || return 1
  base64 -w0 "$pending/$name.csr"
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

agent_csr=$(prepare_pair "$AGENT_KEY_PATH" agent) || fail "agent-key-generation-failed"
cli_csr=$(prepare_pair "$CLI_KEY_PATH" cli) || fail "cli-key-generation-failed"
for key_path in "$AGENT_KEY_PATH" "$CLI_KEY_PATH"; do
  printf '%s\n' "$ATTEMPT_ID" >"$(dirname "$key_path")/.pending/attempt"
done

printf '{"ok":true,"stage":"prepare","attemptId":"%s","agentCsr":"%s","cliCsr":"%s","current":{"agent":%s,"cli":%s}}\n' \
  "$ATTEMPT_ID" "$agent_csr" "$cli_csr" "$(describe_current "$AGENT_CERT_PATH")" "$(describe_current "$CLI_CERT_PATH")"
