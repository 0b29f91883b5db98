#!/usr/bin/env bash
# azd preprovision hook: fail early, with the fix, when a required setting is missing, and record who
# runs azd, so that main.bicep gives the right kind of principal its roles and one PostgreSQL Entra
# administrator exists to create the app's database role (infra/hooks/postprovision.sh).
#
#   azd env set TRAWL_ALERT_EMAIL ops@example.com         # alerts and API Management notifications
#   azd env set TRAWL_API_AUDIENCE api://trawl            # Application ID URI of the API's app registration
#
# Records, from the Azure CLI's signed-in identity (which must be azd's, AZURE_PRINCIPAL_ID):
#   AZURE_PRINCIPAL_TYPE  User or ServicePrincipal: role assignments fail with UnmatchedPrincipalType
#                         when a CI service principal is declared a User;
#   AZURE_PRINCIPAL_NAME  its PostgreSQL name: a user's UPN, a service principal's display name.
# Either may be set beforehand with `azd env set` to skip the detection. With
# TRAWL_POSTGRES_ADMIN_GROUP_ID and TRAWL_POSTGRES_ADMIN_GROUP_NAME set, that group is the PostgreSQL
# administrator instead and AZURE_PRINCIPAL_NAME is not needed.
set -euo pipefail

missing=0
for name in TRAWL_ALERT_EMAIL TRAWL_API_AUDIENCE; do
  if [ -z "${!name:-}" ]; then
    echo "preprovision: $name is not set; run: azd env set $name <value> (see README.md, Deploy to Azure)" >&2
    missing=1
  fi
done
if [ -n "${TRAWL_POSTGRES_ADMIN_GROUP_ID:-}" ] && [ -z "${TRAWL_POSTGRES_ADMIN_GROUP_NAME:-}" ]; then
  echo "preprovision: TRAWL_POSTGRES_ADMIN_GROUP_ID is set but not TRAWL_POSTGRES_ADMIN_GROUP_NAME (the group's display name)" >&2
  missing=1
fi
[ "$missing" -eq 0 ] || exit 1

group_admin="${TRAWL_POSTGRES_ADMIN_GROUP_ID:-}"
principal_type="${AZURE_PRINCIPAL_TYPE:-}"
principal_name="${AZURE_PRINCIPAL_NAME:-}"

# Prints the object id, type and PostgreSQL name of the Azure CLI's signed-in identity, separated by
# the ASCII unit separator (\037, which no name contains), or nothing when az cannot tell (not
# installed, not signed in).
signed_in_principal() {
  command -v az >/dev/null 2>&1 || return 0
  local kind client_id details
  kind=$(az account show --query user.type --output tsv 2>/dev/null) || return 0
  case "$kind" in
    user)
      details=$(az ad signed-in-user show --query '[id, userPrincipalName]' --output tsv 2>/dev/null) || return 0
      printf '%s\037User\037%s\n' "$(printf '%s\n' "$details" | sed -n 1p)" "$(printf '%s\n' "$details" | sed -n 2p)" ;;
    servicePrincipal)
      client_id=$(az account show --query user.name --output tsv 2>/dev/null) || return 0
      if details=$(az ad sp show --id "$client_id" --query '[id, displayName]' --output tsv 2>/dev/null); then
        printf '%s\037ServicePrincipal\037%s\n' "$(printf '%s\n' "$details" | sed -n 1p)" "$(printf '%s\n' "$details" | sed -n 2p)"
      else
        # Without directory read access the type is still known; the name must then be set by hand.
        printf '\037ServicePrincipal\037\n'
      fi ;;
  esac
}

if [ -z "$principal_type" ] || { [ -z "$principal_name" ] && [ -z "$group_admin" ]; }; then
  IFS=$'\037' read -r object_id detected_type detected_name <<<"$(signed_in_principal)" || true
  if [ -n "${object_id:-}" ] && [ -n "${AZURE_PRINCIPAL_ID:-}" ] && [ "$object_id" != "$AZURE_PRINCIPAL_ID" ]; then
    echo "preprovision: az is signed in as ${detected_name:-$object_id}, not as azd's principal $AZURE_PRINCIPAL_ID;" \
         "sign in to both as the same identity (az login / azd auth login)." >&2
    detected_type="" detected_name=""
  fi
  if [ -z "$principal_type" ] && [ -n "${detected_type:-}" ]; then
    principal_type="$detected_type"
    azd env set AZURE_PRINCIPAL_TYPE "$principal_type"
  fi
  if [ -z "$principal_name" ] && [ -n "${detected_name:-}" ]; then
    principal_name="$detected_name"
    azd env set AZURE_PRINCIPAL_NAME "$principal_name"
  fi
fi

echo "preprovision: azd runs as a ${principal_type:-User} (AZURE_PRINCIPAL_TYPE)."
if [ -n "$group_admin" ]; then
  echo "preprovision: the Entra group ${TRAWL_POSTGRES_ADMIN_GROUP_NAME} will be the PostgreSQL administrator."
elif [ -n "$principal_name" ]; then
  echo "preprovision: $principal_name will be the PostgreSQL Entra administrator."
else
  cat >&2 <<'EOF'
preprovision: no PostgreSQL Entra administrator: az could not tell who runs azd, and without one
preprovision: nobody can create the app's database role. Do one of these, then run azd up again:
preprovision:   az login                                   # as the same identity as azd
preprovision:   azd env set AZURE_PRINCIPAL_NAME <your UPN, or the service principal's display name>
preprovision:   azd env set TRAWL_POSTGRES_ADMIN_GROUP_ID <group object id>
preprovision:   azd env set TRAWL_POSTGRES_ADMIN_GROUP_NAME <group display name>
EOF
  exit 1
fi
