"""The azd hooks, run for real with bash: stand-in `az`, `azd` and `curl` on a PATH of their own
answer the calls the hooks make and record them. preprovision.sh records who runs azd (a CI service
principal is not a User); postprovision.sh never stops `azd up` for a missing tool and says what to
run, and its SQL, run on a real PostgreSQL set up the way Azure sets up an Entra administrator,
leaves the app's identity a plain role that can migrate its schema and nothing more."""
from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit
from uuid import uuid4

import psycopg2
import pytest

from shared.adapters.db.migrate import load_migrations, migrate
from tests.infra.conftest import INFRA

if TYPE_CHECKING:
    from pgserver import PostgresServer

pytestmark = pytest.mark.infra

HOOKS = INFRA / "hooks"
# What the hooks run besides bash builtins and the commands each test stands in for.
SYSTEM_TOOLS = ("cat", "date", "sed")
Response = str | int  # what a stand-in prints, or the exit status it fails with


@dataclass
class Hook:
    """A hook run in a sandbox: `bin` is its whole PATH, `calls` what the stand-ins were asked."""

    bin: Path
    log: Path

    def stand_in(self, name: str, responses: dict[str, Response]) -> None:
        """A command that answers these argument lists (anything else fails) and logs each call; an
        argument list ending in " *" stands for every list that starts with the rest."""
        cases = []
        for args, response in responses.items():
            action = f"exit {response}" if isinstance(response, int) else f"printf '%s\\n' {shlex.quote(response)}"
            pattern = shlex.quote(args[:-1]) + "*" if args.endswith(" *") else shlex.quote(args)
            cases.append(f"  {pattern}) {action} ;;")
        script = "\n".join([
            "#!/bin/bash",
            f"printf '%s\\n' {shlex.quote(name)}\" $*\" >> {shlex.quote(str(self.log))}",
            'case "$*" in', *cases, "  *) exit 97 ;;", "esac", ""])
        path = self.bin / name
        path.write_text(script)
        path.chmod(0o755)

    def link(self, name: str, target: Path) -> None:
        (self.bin / name).symlink_to(target)

    def wrap(self, name: str, target: Path) -> None:
        """`name` runs `target` (a symlink would break executables that find their libraries beside them)."""
        path = self.bin / name
        path.write_text(f'#!/bin/bash\nexec {shlex.quote(str(target))} "$@"\n')
        path.chmod(0o755)

    def run(self, script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([shutil.which("bash") or "/bin/bash", str(HOOKS / script)], env={"PATH": str(self.bin), **env},
                              capture_output=True, text=True, timeout=60, check=False)

    @property
    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def hook(tmp_path: Path) -> Hook:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sandbox = Hook(bin_dir, tmp_path / "calls.log")
    for tool in SYSTEM_TOOLS:
        found = shutil.which(tool)
        assert found, tool
        sandbox.link(tool, Path(found))
    sandbox.stand_in("azd", {})
    return sandbox


REQUIRED = {"TRAWL_ALERT_EMAIL": "ops@example.com", "TRAWL_API_AUDIENCE": "api://trawl"}
SP_OBJECT_ID = "5f0c2b7e-3d64-4c1b-9c1e-2a4e0d6f8b11"
SP_CLIENT_ID = "0b9c9d52-39c5-4a3c-9e0a-5d8f64f9b1a7"


def recorded(hook: Hook) -> dict[str, str]:
    """What the hook recorded with `azd env set NAME VALUE`."""
    sets = [call.split(" ", 4)[3:] for call in hook.calls if call.startswith("azd env set ")]
    return {name: value for name, value in sets}


def test_preprovision_records_a_ci_service_principal_as_one(hook: Hook) -> None:
    hook.stand_in("azd", {"env set AZURE_PRINCIPAL_TYPE ServicePrincipal": 0,
                          "env set AZURE_PRINCIPAL_NAME trawl-ci": 0})
    hook.stand_in("az", {"account show --query user.type --output tsv": "servicePrincipal",
                         "account show --query user.name --output tsv": SP_CLIENT_ID,
                         f"ad sp show --id {SP_CLIENT_ID} --query [id, displayName] --output tsv":
                             f"{SP_OBJECT_ID}\ntrawl-ci"})

    run = hook.run("preprovision.sh", {**REQUIRED, "AZURE_PRINCIPAL_ID": SP_OBJECT_ID})

    assert run.returncode == 0, run.stderr
    assert recorded(hook) == {"AZURE_PRINCIPAL_TYPE": "ServicePrincipal", "AZURE_PRINCIPAL_NAME": "trawl-ci"}


def test_preprovision_records_a_user_by_user_principal_name(hook: Hook) -> None:
    hook.stand_in("azd", {"env set AZURE_PRINCIPAL_TYPE User": 0, "env set AZURE_PRINCIPAL_NAME dev@contoso.com": 0})
    hook.stand_in("az", {"account show --query user.type --output tsv": "user",
                         "ad signed-in-user show --query [id, userPrincipalName] --output tsv":
                             f"{SP_OBJECT_ID}\ndev@contoso.com"})

    run = hook.run("preprovision.sh", {**REQUIRED, "AZURE_PRINCIPAL_ID": SP_OBJECT_ID})

    assert run.returncode == 0, run.stderr
    assert recorded(hook) == {"AZURE_PRINCIPAL_TYPE": "User", "AZURE_PRINCIPAL_NAME": "dev@contoso.com"}


def test_preprovision_stops_with_the_fix_when_no_database_administrator_can_be_named(hook: Hook) -> None:
    """A service principal without directory read access: its type is known, its name is not."""
    hook.stand_in("azd", {"env set AZURE_PRINCIPAL_TYPE ServicePrincipal": 0})
    hook.stand_in("az", {"account show --query user.type --output tsv": "servicePrincipal",
                         "account show --query user.name --output tsv": SP_CLIENT_ID})

    run = hook.run("preprovision.sh", REQUIRED)

    assert run.returncode == 1
    assert recorded(hook) == {"AZURE_PRINCIPAL_TYPE": "ServicePrincipal"}
    assert "azd env set AZURE_PRINCIPAL_NAME" in run.stderr and "TRAWL_POSTGRES_ADMIN_GROUP_ID" in run.stderr


def test_preprovision_needs_no_principal_name_when_a_group_administers_the_database(hook: Hook) -> None:
    run = hook.run("preprovision.sh", {**REQUIRED, "AZURE_PRINCIPAL_TYPE": "ServicePrincipal",
                                       "TRAWL_POSTGRES_ADMIN_GROUP_ID": SP_OBJECT_ID,
                                       "TRAWL_POSTGRES_ADMIN_GROUP_NAME": "trawl-db-admins"})

    assert run.returncode == 0, run.stderr
    assert hook.calls == [], "nothing to detect, nothing recorded"


PROVISIONED = {
    "AZURE_RESOURCE_GROUP": "rg-trawl-dev",
    "AZURE_POSTGRES_SERVER_NAME": "psql-trawl-abc",
    "AZURE_POSTGRES_HOST": "psql-trawl-abc.postgres.database.azure.com",
    "AZURE_POSTGRES_DATABASE": "trawl",
    "AZURE_MANAGED_IDENTITY_NAME": "id-trawl-abc",
    "AZURE_MANAGED_IDENTITY_PRINCIPAL_ID": "9a1f3c55-7b2e-4f0d-8c6a-3e5b7d9f1a2c",
    "AZURE_POSTGRES_ADMIN_NAME": "dev@contoso.com",
    "AZURE_POSTGRES_PUBLIC_ACCESS": "true",
}
TOKEN_CALL = "account get-access-token --resource-type oss-rdbms --query accessToken --output tsv"
IP_LOOKUP = "--fail --silent --show-error --max-time 10 https://api.ipify.org"
RERUN = "azd hooks run postprovision"


def test_postprovision_without_psql_lets_azd_deploy_and_says_what_to_run(hook: Hook) -> None:
    hook.stand_in("az", {TOKEN_CALL: "token"})
    hook.stand_in("curl", {IP_LOOKUP: "203.0.113.7"})

    run = hook.run("postprovision.sh", PROVISIONED)

    assert run.returncode == 0, "a missing tool must not stop azd up before the code is deployed"
    assert "psql is not installed" in run.stderr and RERUN in run.stderr
    assert not [call for call in hook.calls if "firewall-rule" in call]


def test_postprovision_without_its_address_lets_azd_deploy_and_prints_the_sql(hook: Hook) -> None:
    hook.stand_in("az", {TOKEN_CALL: "token"})
    hook.stand_in("curl", {IP_LOOKUP: 6})
    hook.link("psql", Path("/bin/false"))

    run = hook.run("postprovision.sh", PROVISIONED)

    assert run.returncode == 0
    assert "address could not be looked up" in run.stderr
    assert "pgaadauth_create_principal_with_oid('id-trawl-abc'" in run.stderr
    assert not [call for call in hook.calls if "firewall-rule" in call]


@dataclass(frozen=True)
class AzureLikeServer:
    """A local PostgreSQL set up the way Azure sets up Entra authentication: `admin` is the Entra
    administrator (CREATEROLE, CREATEDB, a member of azure_pg_admin, which owns `database`), and
    pgaadauth_create_principal_with_oid creates roles as a superuser does on Azure."""

    socket_dir: str
    database: str
    admin: str
    app_role: str

    def url(self, user: str) -> str:
        return f"postgresql://{user}@/{self.database}?host={self.socket_dir}"


PGAADAUTH_STAND_IN = """
CREATE FUNCTION pgaadauth_create_principal_with_oid(name text, oid text, kind text, is_admin boolean, mfa boolean)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    EXECUTE format('CREATE ROLE %I LOGIN', name);
    IF is_admin THEN
        EXECUTE format('GRANT azure_pg_admin TO %I WITH INHERIT TRUE', name);
    END IF;
    RETURN format('Created role for "%s"', name);
END $$
"""


def system_psql() -> Path:
    """The PostgreSQL client the hook needs on a deploying machine too (pgserver's own psql lacks TLS,
    which the hook requires)."""
    found = shutil.which("psql")
    if found is None:
        pytest.fail("psql is missing: install the PostgreSQL client (README.md, Deploy to Azure)")
    return Path(found)


def superuser_execute(url: str, *statements: str) -> None:
    with closing(psycopg2.connect(url)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)


@pytest.fixture
def azure_like(pg_server: PostgresServer, empty_db_url: str) -> Iterator[AzureLikeServer]:
    suffix = uuid4().hex[:10]
    server = AzureLikeServer(socket_dir=parse_qs(urlsplit(empty_db_url).query)["host"][0],
                             database=urlsplit(empty_db_url).path.lstrip("/"),
                             admin=f"dev-{suffix}@contoso.com", app_role=f"id-trawl-{suffix}")
    superuser_execute(
        pg_server.get_uri(),
        "DO $$ BEGIN CREATE ROLE azure_pg_admin NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$",
        f'CREATE ROLE "{server.admin}" LOGIN CREATEROLE CREATEDB IN ROLE azure_pg_admin',
        f'ALTER DATABASE "{server.database}" OWNER TO azure_pg_admin',
        PGAADAUTH_STAND_IN)
    yield server
    superuser_execute(empty_db_url, f"""DO $$ BEGIN
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{server.app_role}') THEN
            DROP OWNED BY "{server.app_role}";
            DROP ROLE "{server.app_role}";
        END IF; END $$""")
    superuser_execute(pg_server.get_uri(), f'DROP ROLE "{server.admin}"',
                      "DROP FUNCTION pgaadauth_create_principal_with_oid")


@pytest.mark.integration
def test_postprovision_leaves_the_app_a_plain_role_that_owns_its_tables(hook: Hook, azure_like: AzureLikeServer) -> None:
    hook.stand_in("az", {TOKEN_CALL: "entra-token", "postgres flexible-server firewall-rule *": 0})
    hook.stand_in("curl", {IP_LOOKUP: "203.0.113.7"})
    hook.wrap("psql", system_psql())
    env = {**PROVISIONED, "AZURE_POSTGRES_HOST": azure_like.socket_dir, "AZURE_POSTGRES_DATABASE": azure_like.database,
           "AZURE_MANAGED_IDENTITY_NAME": azure_like.app_role, "AZURE_POSTGRES_ADMIN_NAME": azure_like.admin}

    first, again = hook.run("postprovision.sh", env), hook.run("postprovision.sh", env)

    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    firewall = [call.split() for call in hook.calls if "firewall-rule" in call]
    assert [call[4] for call in firewall] == ["create", "delete", "create", "delete"], "removed again each time"
    assert all(call[5:9] == ["--resource-group", "rg-trawl-dev", "--name", "psql-trawl-abc"] for call in firewall)
    assert "--start-ip-address 203.0.113.7 --end-ip-address 203.0.113.7" in " ".join(firewall[0])
    with closing(psycopg2.connect(azure_like.url(azure_like.app_role))) as conn:
        assert migrate(conn) == [m.version for m in load_migrations()]
        with conn.cursor() as cur:
            cur.execute("SELECT rolsuper, rolcreaterole, rolcreatedb, pg_has_role(rolname, 'azure_pg_admin', 'MEMBER')"
                        " FROM pg_roles WHERE rolname = current_user")
            assert cur.fetchone() == (False, False, False, False)
            cur.execute("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
            assert cur.fetchall() == [(azure_like.app_role,)]
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute("CREATE SCHEMA elsewhere")
