#!/usr/bin/env bash
# azd postprovision hook: the database role of the Function App's managed identity.
#
# The identity is not a PostgreSQL administrator (infra/modules/postgres.bicep). This step signs in as
# the one Entra administrator (AZURE_POSTGRES_ADMIN_NAME: the user or service principal that ran azd,
# or the administrator group, which it must then belong to) with an Entra token from `az`, over TLS,
# through a firewall rule for this machine's address that it removes again on exit, and:
#   1. creates the identity's role with pgaadauth_create_principal_with_oid when it is missing, as a
#      plain role: not an administrator, so no azure_pg_admin, CREATEROLE or CREATEDB;
#   2. lets that role connect to the application database and create tables in its public schema, so
#      it owns the tables its migrations create and nothing else.
# It is idempotent. It runs before azd deploys the code. A missing tool, or this machine's address
# that cannot be looked up, does not stop `azd up`: the step says what is missing and what to run, azd
# deploys the code, and the app answers 503 until the step has run:
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
admin="${AZURE_POSTGRES_ADMIN_NAME:-}"

print_manual_sql() {
  cat <<SQL
  -- in database postgres, signed in as the Entra administrator ${admin:-(AZURE_POSTGRES_ADMIN_NAME)}:
  SELECT pgaadauth_create_principal_with_oid('$role', '$oid', 'service', false, false)
   WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$role');
  GRANT CONNECT ON DATABASE "$database" TO "$role";
  -- in database $database:
  GRANT USAGE, CREATE ON SCHEMA public TO "$role";
SQL
}

# Leaves the step for later without failing azd: the code still deploys, and the app answers 503
# (it cannot sign in to PostgreSQL) until the step has run.
postpone() {
  echo "postprovision: NOT DONE: $1" >&2
  echo "postprovision: until this step runs, the app cannot sign in to PostgreSQL and answers 503." >&2
  echo "postprovision: $2" >&2
  exit 0
}

if [ -z "$admin" ]; then
  postpone "no PostgreSQL Entra administrator is recorded (AZURE_POSTGRES_ADMIN_NAME)." \
    "Run azd provision again (infra/hooks/preprovision.sh says what it needs), then: azd hooks run postprovision"
fi
if [ "${AZURE_POSTGRES_PUBLIC_ACCESS:-true}" != "true" ]; then
  echo "postprovision: the server has private access only; from a machine in its VNet run:" >&2
  print_manual_sql >&2
  postpone "the server cannot be reached from here." "Run the SQL above from inside the VNet."
fi
for tool in az psql curl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    postpone "$tool is not installed." "Install it (README.md, Deploy to Azure), then run: azd hooks run postprovision"
  fi
done

# An Entra access token is the password; it is never printed and expires within the hour.
if ! PGPASSWORD=$(az account get-access-token --resource-type oss-rdbms --query accessToken --output tsv); then
  postpone "az could not get a token for PostgreSQL." "Sign in with az login as $admin, then run: azd hooks run postprovision"
fi
if ! client_ip=$(curl --fail --silent --show-error --max-time 10 https://api.ipify.org); then
  postpone "this machine's public address could not be looked up (api.ipify.org)." \
    "Run again where it can be, or run this SQL yourself through a firewall rule for your address:
$(print_manual_sql)"
fi

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

export PGPASSWORD PGHOST="$AZURE_POSTGRES_HOST" PGUSER="$admin" PGSSLMODE=require
run_sql() {
  psql --dbname "$1" --no-psqlrc --quiet -v ON_ERROR_STOP=1 -v role="$role" -v oid="$oid" -v database="$database"
}

create_role() {
  run_sql postgres <<'SQL'
SELECT pgaadauth_create_principal_with_oid(:'role', :'oid', 'service', false, false)
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role');
GRANT CONNECT ON DATABASE :"database" TO :"role";
SQL
}
grant_schema() {
  run_sql "$database" <<'SQL'
GRANT USAGE, CREATE ON SCHEMA public TO :"role";
SQL
}

if ! create_role || ! grant_schema; then
  echo "postprovision: the SQL above failed; fix it, then run: azd hooks run postprovision && azd deploy" >&2
  exit 1
fi
echo "postprovision: $role may connect to $database and owns the tables it creates in its public schema"
