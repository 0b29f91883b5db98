"""A local token issuer for apps run with TRAWL_AUTH_MODE=dev: devhost's stand-in for Entra ID.

Its RSA signing key is generated on first use into `<state>/devauth/` (git-ignored with the rest of
`.devhost/`), devhost serves the public key as a JWKS at `/.devhost/jwks`, and

    python -m devhost token --user alice --roles Jobs.Submit,Jobs.Read

prints an access token shaped like Entra ID's (tid, oid, roles, aud, iss, exp/nbf/iat) for it. The
issuer is `https://devhost.localhost/<tenant>/v2.0`, never an Entra ID issuer, so these tokens fail
wherever the app expects Entra ID. The dashboard's dev sign-in gets the same tokens from
`POST /.devhost/token` (only devhost serves it).
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from devhost.http_types import RawRequest, RawResponse, SystemHandler

JWKS_PATH = "/.devhost/jwks"
TOKEN_PATH = "/.devhost/token"
TOKEN_MINUTES = 60
ISSUER = "https://devhost.localhost/{tenant}/v2.0"
DEFAULT_TENANT = "00000000-0000-4000-8000-00000000d3b0"
DEFAULT_AUDIENCE = "api://trawl-local"
KEY_FILE = "signing-key.pem"
# The app roles Trawl checks (shared/adapters/auth.py; a test keeps the two lists equal).
KNOWN_ROLES = ("Jobs.Submit", "Jobs.Read", "Jobs.Admin")
_USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


class DevIssuer:
    """The signing key in `<state_dir>/devauth/`, its JWKS, and tokens signed with it."""

    def __init__(self, state_dir: Path) -> None:
        self.key_path = state_dir / "devauth" / KEY_FILE

    def private_key(self) -> rsa.RSAPrivateKey:
        """The signing key, generated on first use; concurrent first uses agree on one key."""
        if not self.key_path.exists():
            self._generate()
        key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{self.key_path} does not hold an RSA private key")
        return key

    def jwks(self) -> dict[str, Any]:
        """The public key as a JSON Web Key Set."""
        public = RSAAlgorithm.to_jwk(self.private_key().public_key(), as_dict=True)
        return {"keys": [{**public, "kid": key_id(public), "use": "sig", "alg": "RS256"}]}

    def mint(self, user: str, roles: list[str], tenant: str = DEFAULT_TENANT, audience: str = DEFAULT_AUDIENCE,
             minutes: int = 60) -> str:
        """An access token for `user` (its oid is stable per tenant and user name) with these app roles."""
        key = self.private_key()
        now = int(time.time())
        oid = object_id(user, tenant)
        claims = {
            "iss": ISSUER.format(tenant=tenant), "aud": audience, "tid": tenant, "oid": oid, "sub": oid,
            "name": user, "preferred_username": f"{user}@devhost.localhost", "roles": roles, "ver": "2.0",
            "iat": now, "nbf": now, "exp": now + minutes * 60,
        }
        kid = key_id(RSAAlgorithm.to_jwk(key.public_key(), as_dict=True))
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid, "typ": "JWT"})

    def _generate(self) -> None:
        self.key_path.parent.mkdir(parents=True, exist_ok=True)
        pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        staging = self.key_path.with_name(f".{KEY_FILE}.{os.getpid()}")
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(pem)
        try:
            os.link(staging, self.key_path)  # atomic, and fails if another process got there first
        except FileExistsError:
            pass  # that process's key is the key: exactly what we want
        finally:
            staging.unlink()


def object_id(user: str, tenant: str = DEFAULT_TENANT) -> str:
    """The stable oid of a dev user name in a tenant."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"devhost:{tenant}:{user}"))


def key_id(public_jwk: dict[str, Any]) -> str:
    """The RFC 7638 thumbprint of an RSA public JWK, used as its `kid`."""
    canonical = json.dumps({k: public_jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def jwks_handler(state_dir: Path) -> SystemHandler:
    """devhost's `/.devhost/jwks` route."""
    issuer = DevIssuer(state_dir)

    def handle(request: RawRequest) -> RawResponse:
        if request.method not in ("GET", "HEAD"):
            return RawResponse(405, {"Allow": "GET"})
        return RawResponse.json(200, issuer.jwks(), {"Cache-Control": "max-age=300"})

    return handle


def token_handler(state_dir: Path) -> SystemHandler:
    """devhost's `POST /.devhost/token` route: `{"user", "roles"[, "tenant", "audience"]}` in, a dev token for that
    user out (an hour), for the dashboard's dev sign-in. Only a JSON request to a loopback host name, from this
    origin or none, is answered: a page on another site cannot read the answer (no CORS), nor reach it by
    rebinding its own name to 127.0.0.1 (the Host check)."""
    issuer = DevIssuer(state_dir)

    def handle(request: RawRequest) -> RawResponse:
        if request.method != "POST":
            return RawResponse(405, {"Allow": "POST"})
        refusal = _cross_site_refusal(request)
        if refusal:
            return _problem(403, "Not allowed", refusal)
        try:
            user, roles, tenant, audience = _token_request(request.body)
        except ValueError as exc:
            return _problem(400, "Bad request", str(exc))
        token = issuer.mint(user, roles, tenant, audience, TOKEN_MINUTES)
        return RawResponse.json(200, {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_MINUTES * 60},
                                {"Cache-Control": "no-store"})

    return handle


def _cross_site_refusal(request: RawRequest) -> str | None:
    host = request.header("Host") or ""
    if host.rsplit(":", 1)[0] not in _LOOPBACK_NAMES:
        return "dev tokens are issued on a loopback address only (127.0.0.1, localhost)"
    origin = request.header("Origin")
    if origin is not None and origin != f"http://{host}":
        return "dev tokens are issued to pages of this origin only"
    if (request.header("Content-Type") or "").partition(";")[0].strip().lower() != "application/json":
        return "send the request as application/json"
    return None


def _token_request(body: bytes) -> tuple[str, list[str], str, str]:
    """The user, roles, tenant and audience of a token request; ValueError says what is wrong."""
    try:
        fields = json.loads(body or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None
    if not isinstance(fields, dict) or set(fields) - {"user", "roles", "tenant", "audience"}:
        raise ValueError("the body is a JSON object with user, roles and optionally tenant and audience")
    user, roles = fields.get("user"), fields.get("roles", [])
    if not isinstance(user, str) or not _USER_NAME.fullmatch(user):
        raise ValueError("user is 1 to 64 letters, digits and . _ @ -, starting with a letter or digit")
    if not isinstance(roles, list) or any(role not in KNOWN_ROLES for role in roles):
        raise ValueError(f"roles is a list of Trawl's roles ({', '.join(KNOWN_ROLES)})")
    tenant, audience = fields.get("tenant", DEFAULT_TENANT), fields.get("audience", DEFAULT_AUDIENCE)
    if not isinstance(tenant, str) or not _is_uuid(tenant):
        raise ValueError("tenant is a tenant id (a UUID)")
    if not isinstance(audience, str) or not 0 < len(audience) <= 200:
        raise ValueError("audience is the API's audience, at most 200 characters")
    return user, list(dict.fromkeys(roles)), tenant, audience


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _problem(status: int, title: str, detail: str) -> RawResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return RawResponse(status, {"Content-Type": "application/problem+json", "Cache-Control": "no-store"},
                       json.dumps(body).encode())


def main(argv: list[str]) -> int:
    """`python -m devhost token ...`: print a dev token on stdout."""
    parser = argparse.ArgumentParser(prog="python -m devhost token", description=main.__doc__)
    parser.add_argument("--user", required=True, help="user name; the same name always gets the same oid")
    parser.add_argument("--roles", default="Jobs.Submit,Jobs.Read", help="comma-separated app roles")
    parser.add_argument("--tenant", default=DEFAULT_TENANT, help=f"tenant id (default {DEFAULT_TENANT})")
    parser.add_argument("--audience", default=DEFAULT_AUDIENCE, help=f"audience (default {DEFAULT_AUDIENCE})")
    parser.add_argument("--minutes", type=int, default=60, help="lifetime in minutes (default 60)")
    parser.add_argument("--script-root", type=Path, default=Path.cwd(), help="the app folder (default: current folder)")
    parser.add_argument("--state-dir", type=Path, default=None, help="devhost's state (default: <script-root>/.devhost)")
    args = parser.parse_args(argv)
    roles = [role.strip() for role in args.roles.split(",") if role.strip()]
    for role in roles:
        if role not in KNOWN_ROLES:  # a typo would otherwise surface only as a 403
            sys.stderr.write(f"warning: {role!r} is not one of Trawl's roles ({', '.join(KNOWN_ROLES)}); "
                             "the token carries it but it grants nothing\n")
    issuer = DevIssuer(args.state_dir or args.script_root.resolve() / ".devhost")
    sys.stdout.write(issuer.mint(args.user, roles, args.tenant, args.audience, args.minutes) + "\n")
    return 0
