#!/bin/bash
# aws for a node sandbox: the one AWS CLI v2 call a Nomad server makes, reading a secret with its
# instance role, against the local world's Secrets Manager (AWS JSON 1.1, SigV4-signed as the real
# CLI signs, with the instance credentials from node.env):
#   aws secretsmanager get-secret-value --secret-id ID [--version-stage S] [--version-id V]
#       [--query FIELD] [--output json|text] [--region R]
# Exit codes follow AWS CLI v2: 252 bad usage, 253 no credentials, 254 a service error, 255 anything
# else. Any other command or option exits 252 and says so.
set -euo pipefail
# shellcheck source=/dev/null
source "$(dirname "$0")/node.env"

usage() {
  printf 'aws (nomad-rotator local world): %s\n' "$1" >&2
  exit 252
}

positional=()
secret_id=''
version_id=''
version_stage=''
query=''
output=json
region=${AWS_REGION:-${AWS_DEFAULT_REGION:-$INSTANCE_REGION}}
while (($# > 0)); do
  option=$1
  value=''
  case "$option" in
    --*=*)
      value=${option#*=}
      option=${option%%=*}
      ;;
    --*)
      (($# >= 2)) || usage "$option needs a value"
      value=$2
      shift
      ;;
    *)
      positional+=("$option")
      shift
      continue
      ;;
  esac
  case "$option" in
    --secret-id) secret_id=$value ;;
    --version-id) version_id=$value ;;
    --version-stage) version_stage=$value ;;
    --query) query=$value ;;
    --output) output=$value ;;
    --region) region=$value ;;
    *) usage "unsupported option $option (only: --secret-id --version-id --version-stage --query --output --region)" ;;
  esac
  shift
done

if [[ "${positional[*]}" != "secretsmanager get-secret-value" ]]; then
  usage "unsupported command 'aws${positional[*]:+ ${positional[*]}}' (only 'aws secretsmanager get-secret-value')"
fi
[[ -n "$secret_id" ]] || usage "the following arguments are required: --secret-id"
[[ "$secret_id" =~ ^[A-Za-z0-9/_+=.@:-]{1,2048}$ ]] || usage "invalid --secret-id"
[[ -z "$version_id" || "$version_id" =~ ^[A-Za-z0-9-]{32,64}$ ]] || usage "invalid --version-id"
[[ -z "$version_stage" || "$version_stage" =~ ^[A-Za-z0-9_.@+=-]{1,256}$ ]] || usage "invalid --version-stage"
[[ -z "$query" || "$query" =~ ^[A-Za-z]+$ ]] || usage "--query supports one top-level field name only"
[[ "$output" == json || "$output" == text ]] || usage "--output must be json or text"
[[ "$output" == json || -n "$query" ]] || usage "--output text needs --query FIELD"
[[ "$region" =~ ^[a-z]{2}(-[a-z]+)+-[0-9]+$ ]] || usage "invalid region '$region'"

endpoint=${SECRETS_MANAGER_ENDPOINT:-}
if [[ ! "$endpoint" =~ ^https?://([A-Za-z0-9.-]+(:[0-9]{1,5})?)$ ]]; then
  echo "aws (nomad-rotator local world): this node has no Secrets Manager endpoint" >&2
  exit 255
fi
host=${BASH_REMATCH[1]}
# Environment credentials win over the instance role's, as in the CLI's provider chain.
if [[ -n "${AWS_ACCESS_KEY_ID:-}" ]]; then
  access_key=$AWS_ACCESS_KEY_ID
  secret_key=${AWS_SECRET_ACCESS_KEY:-}
  session_token=${AWS_SESSION_TOKEN:-}
else
  access_key=$INSTANCE_ACCESS_KEY_ID
  secret_key=$INSTANCE_SECRET_ACCESS_KEY
  session_token=$INSTANCE_SESSION_TOKEN
fi
if [[ ! "$access_key" =~ ^[A-Z0-9]{16,128}$ || ! "$secret_key" =~ ^[A-Za-z0-9/+=]{16,128}$ ||
  ! "$session_token" =~ ^[A-Za-z0-9/+=]*$ ]]; then
  echo "Unable to locate credentials. You can configure credentials by running \"aws configure\"." >&2
  exit 253
fi

payload=$(jq -cn --arg id "$secret_id" --arg vid "$version_id" --arg stage "$version_stage" '
  {SecretId: $id} + (if $vid == "" then {} else {VersionId: $vid} end)
  + (if $stage == "" then {} else {VersionStage: $stage} end)')

# SigV4 (docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv4-create-signed-request.html). The
# HMAC keys pass through openssl's command line: acceptable for the world's throwaway instance
# credentials, which is all this shim ever holds.
sha256() { openssl dgst -sha256 -hex | sed 's/^.*= //'; }
hmac() { printf '%s' "$2" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$1" -hex | sed 's/^.*= //'; }
amz_date=$(date -u +%Y%m%dT%H%M%SZ)
day=${amz_date%%T*}
target=secretsmanager.GetSecretValue
headers="content-type:application/x-amz-json-1.1
host:$host
x-amz-date:$amz_date
${session_token:+x-amz-security-token:$session_token
}x-amz-target:$target"
signed_headers="content-type;host;x-amz-date;${session_token:+x-amz-security-token;}x-amz-target"
canonical_request="POST
/

$headers

$signed_headers
$(printf '%s' "$payload" | sha256)"
scope="$day/$region/secretsmanager/aws4_request"
string_to_sign="AWS4-HMAC-SHA256
$amz_date
$scope
$(printf '%s' "$canonical_request" | sha256)"
signing_key=$(printf 'AWS4%s' "$secret_key" | xxd -p -c 256)
for part in "$day" "$region" secretsmanager aws4_request; do
  signing_key=$(hmac "$signing_key" "$part")
done
signature=$(hmac "$signing_key" "$string_to_sign")

curl_args=(-sS --max-time 60 -X POST -w '\n%{http_code}'
  -H 'content-type: application/x-amz-json-1.1'
  -H "x-amz-date: $amz_date"
  -H "x-amz-target: $target"
  -H "authorization: AWS4-HMAC-SHA256 Credential=$access_key/$scope, SignedHeaders=$signed_headers, Signature=$signature"
  --data-binary @-)
[[ -z "$session_token" ]] || curl_args+=(-H "x-amz-security-token: $session_token")
# The body goes out byte for byte as it was hashed for the signature (a here-string would add a newline).
if ! response=$(printf '%s' "$payload" | curl "${curl_args[@]}" "$endpoint/" 2>/dev/null); then
  echo >&2
  echo "Could not connect to the endpoint URL: \"$endpoint/\"" >&2
  exit 255
fi
status=${response##*$'\n'}
response=${response%$'\n'*}
if [[ "$status" != 200 ]]; then
  code=$(jq -r '(.__type // "Unknown") | sub(".*#"; "")' <<<"$response" 2>/dev/null || echo Unknown)
  message=$(jq -r '.message // .Message // ""' <<<"$response" 2>/dev/null || true)
  echo >&2
  echo "An error occurred ($code) when calling the GetSecretValue operation: $message" >&2
  exit 254
fi

# The CLI prints timestamps as ISO 8601, JSON indented by four spaces, and text as bare values (None
# for null, tabs between list items).
# shellcheck disable=SC2016 # a jq program: $query and $ms are jq variables
selection='
  def iso: (floor | strftime("%Y-%m-%dT%H:%M:%S"))
    + (((. * 1000 | floor) % 1000) as $ms | if $ms == 0 then "" else ".\("00\($ms)" | .[-3:])000" end)
    + "+00:00";
  (if has("CreatedDate") then .CreatedDate |= iso else . end)
  | if $query == "" then . else .[$query] end'
if [[ "$output" == json ]]; then
  jq --indent 4 --arg query "$query" "$selection" <<<"$response"
else
  jq -r --arg query "$query" "$selection"'
    | if . == null then "None" elif type == "array" then map(tostring) | join("\t") else tostring end' <<<"$response"
fi
