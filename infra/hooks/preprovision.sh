#!/usr/bin/env bash
# azd preprovision hook: fail early, with the fix, when a required setting is missing, and record
# who the developer is so the post-provision step can sign in to PostgreSQL as them.
#
#   azd env set TRAWL_ALERT_EMAIL ops@example.com         # alerts and API Management notifications
#   azd env set TRAWL_API_AUDIENCE api://trawl            # Application ID URI of the API's app registration
#
# AZURE_PRINCIPAL_NAME (the signed-in user's UPN, from `az`) makes that user a PostgreSQL Entra
# administrator next to the app's identity; without it provisioning still works and
# infra/hooks/postprovision.sh explains what it skipped.
set -euo pipefail

missing=0
for name in TRAWL_ALERT_EMAIL TRAWL_API_AUDIENCE; do
  if [ -z "${!name:-}" ]; then
    echo "preprovision: $name is not set; run: azd env set $name <value> (see README.md, Deploy to Azure)" >&2
    missing=1
  fi
done
[ "$missing" -eq 0 ] || exit 1

if [ -n "${AZURE_PRINCIPAL_NAME:-}" ]; then
  exit 0
fi
if ! command -v az >/dev/null 2>&1; then
  echo "preprovision: az not found; PostgreSQL gets no developer administrator (see postprovision)." >&2
  exit 0
fi
if ! user=$(az ad signed-in-user show --query '[id, userPrincipalName]' --output tsv 2>/dev/null); then
  echo "preprovision: az is not signed in as a user; PostgreSQL gets no developer administrator." >&2
  exit 0
fi
object_id=$(printf '%s\n' "$user" | sed -n 1p)
upn=$(printf '%s\n' "$user" | sed -n 2p)
if [ -n "${AZURE_PRINCIPAL_ID:-}" ] && [ "$object_id" != "$AZURE_PRINCIPAL_ID" ]; then
  echo "preprovision: az is signed in as $upn, not as azd's principal $AZURE_PRINCIPAL_ID;" \
       "run 'az login' as the same user to make them a PostgreSQL administrator." >&2
  exit 0
fi
azd env set AZURE_PRINCIPAL_NAME "$upn"
echo "preprovision: $upn will be a PostgreSQL Entra administrator."
