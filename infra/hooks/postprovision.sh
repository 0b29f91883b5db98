#!/usr/bin/env bash
# azd postprovision hook: the database role of the Function App's managed identity.
#
# The identity is an Entra administrator of the server (infra/modules/postgres.bicep), which gives
# it a role named after it. This step makes that explicit and repeatable: it creates the role with
# pgaadauth_create_principal_with_oid when it is missing (for example after the identity was taken
# out of the administrators to narrow its rights) and grants it what the app's migrations need in
# the application database. It signs in as the developer recorded by preprovision.sh
# (AZURE_POSTGRES_DEVELOPER_ADMIN, an Entra administrator) with an Entra token from `az`, over TLS,
# through a firewall rule for this machine's address that it removes again on exit.
#
# Needs az (signed in as that developer), psql and curl. Run it again any time with:
#   azd hooks run postprovision
set -euo pipefail

: "${AZURE_RESOURCE_GROUP:?run azd provision first}"
: "${AZURE_POSTGRES_SERVER_NAME:?run azd provision first}"
: "${AZURE_POSTGRES_HOST:?run azd provision first}"
: "${AZURE_POSTGRES_DATABASE:?run azd provision first}"
: "${AZURE_MANAGED_IDENTITY_NAME:?run azd provision first}"
: "${AZURE_MANAGED_IDENTITY_PRINCIPAL_ID:?run azd provision first}"

role="$AZURE_MANAGED_IDENTITY_NAME"
oid="$AZURE_MANAGED_IDENTITY_PRINCIPAL_ID"
database="$AZURE_POSTGRES_DATABASE"
admin="${AZURE_POSTGRES_DEVELOPER_ADMIN:-}"

print_manual_sql() {
  cat <<SQL
  -- in database postgres, as an Entra administrator:
  SELECT pgaadauth_create_principal_with_oid('$role', '$oid', 'service', false, false)
   WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$role');
  GRANT CONNECT, CREATE, TEMPORARY ON DATABASE "$database" TO "$role";
  -- in database $database:
  GRANT USAGE, CREATE ON SCHEMA public TO "$role";
SQL
}

if [ -z "$admin" ]; then
  echo "postprovision: skipped, no developer is a PostgreSQL administrator (AZURE_PRINCIPAL_NAME unset)."
  echo "postprovision: the app's identity is an administrator itself, so the app can connect; to narrow"
  echo "postprovision: its rights later, run this as an Entra administrator:"
  print_manual_sql
  exit 0
fi
if [ "${AZURE_POSTGRES_PUBLIC_ACCESS:-true}" != "true" ]; then
  echo "postprovision: skipped, the server has private access only; from a machine in its VNet run:"
  print_manual_sql
  exit 0
fi
for tool in az psql curl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "postprovision: $tool is required (see README.md, Deploy to Azure); then: azd hooks run postprovision" >&2
    exit 1
  fi
done

client_ip=$(curl --fail --silent --show-error --max-time 10 https://api.ipify.org)
rule="azd-postprovision-$(date +%s)"
echo "postprovision: allowing $client_ip through the firewall of $AZURE_POSTGRES_SERVER_NAME for this step"
az postgres flexible-server firewall-rule create --resource-group "$AZURE_RESOURCE_GROUP" \
  --name "$AZURE_POSTGRES_SERVER_NAME" --rule-name "$rule" \
  --start-ip-address "$client_ip" --end-ip-address "$client_ip" --output none
remove_rule() {
  az postgres flexible-server firewall-rule delete --resource-group "$AZURE_RESOURCE_GROUP" \
    --name "$AZURE_POSTGRES_SERVER_NAME" --rule-name "$rule" --yes --output none
}
trap remove_rule EXIT

# An Entra access token is the password; it is never printed and expires within the hour.
PGPASSWORD=$(az account get-access-token --resource-type oss-rdbms --query accessToken --output tsv)
export PGPASSWORD PGHOST="$AZURE_POSTGRES_HOST" PGUSER="$admin" PGSSLMODE=require

psql --dbname postgres --no-psqlrc --quiet -v ON_ERROR_STOP=1 -v role="$role" -v oid="$oid" <<'SQL'
SELECT pgaadauth_create_principal_with_oid(:'role', :'oid', 'service', false, false)
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role');
SQL
echo "postprovision: role $role exists"

grant_database='GRANT CONNECT, CREATE, TEMPORARY ON DATABASE :"database" TO :"role";'
grant_schema='GRANT USAGE, CREATE ON SCHEMA public TO :"role";'
if printf '%s\n' "$grant_database" | psql --dbname postgres --no-psqlrc --quiet -v ON_ERROR_STOP=1 \
     -v role="$role" -v database="$database" \
   && printf '%s\n' "$grant_schema" | psql --dbname "$database" --no-psqlrc --quiet -v ON_ERROR_STOP=1 \
     -v role="$role"; then
  echo "postprovision: $role may connect to $database and create its tables"
else
  echo "postprovision: warning: the grants failed (see above). $role is an Entra administrator, so the" >&2
  echo "postprovision: app still works; the grants matter only once it is not. Run them as the owner of $database." >&2
fi
