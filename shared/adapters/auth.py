"""Bearer token validation for Entra ID access tokens (and devhost's local issuer in dev mode).

One code path for both modes: RS256 only (never the header's choice), a signature by a key from
the configured JWKS URL (never `jku`/`jwk`/`x5u` from the token), the issuer of the token's own
tenant, an allowed tenant, an accepted audience, and `exp`/`nbf`/`iat` within a 60 s leeway.
Dev mode changes only where the keys, issuers, tenants and audiences come from. Permissions come from
the `roles` claim; a delegated token's `scp` must grant the same permission to its client as well.
"""
from __future__ import annotations

import base64
import binascii
import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from uuid import UUID

import jwt

from shared.adapters.jwks import SIGNING_ALGORITHM, JwksCache, http_jwks_fetcher
from shared.domain.errors import Forbidden, Unauthorized
from shared.settings import Settings, get_settings

log = logging.getLogger(f"trawl.{__name__}")

SUBMIT = "Jobs.Submit"
READ = "Jobs.Read"
ADMIN = "Jobs.Admin"

LEEWAY_SECONDS = 60
ENTRA_ISSUERS = {"1": "https://sts.windows.net/{tenant}/", "2": "https://login.microsoftonline.com/{tenant}/v2.0"}
ENTRA_JWKS_URL = "https://login.microsoftonline.com/common/discovery/v2.0/keys"
# devhost's local issuer (devhost/devauth.py): never an Entra ID issuer, so its tokens fail in entra mode.
DEV_ISSUER = "https://devhost.localhost/{tenant}/v2.0"

_REQUIRED_CLAIMS = ["exp", "nbf", "iat", "iss", "aud", "tid", "oid"]
_TIME_CLAIMS = ("exp", "nbf", "iat")
_MAX_TOKEN_CHARS = 16 * 1024
# A compact JWS: three base64url segments, unpadded (an `alg: none` token has an empty signature).
_COMPACT_JWS = re.compile(r"^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]*)$")


class MissingTokenError(Unauthorized):
    """The request carries no bearer token."""

    bearer_error: str | None = None


class InvalidTokenError(Unauthorized):
    """The bearer token is malformed, expired, or not issued for this API."""

    bearer_error = "invalid_token"


class InsufficientRoleError(Forbidden):
    """A valid token without the app role (or delegated scope) the operation needs."""

    bearer_error = "insufficient_scope"

    def __init__(self, role: str) -> None:
        super().__init__(f"this operation needs the {role} app role; a delegated token's client application "
                         f"needs the {role} scope as well", required_role=role)


@dataclass(frozen=True)
class TokenPolicy:
    """What a token must say: issuers accepted per tenant id, and the audiences of this API."""

    issuers: Mapping[str, frozenset[str]]
    audiences: frozenset[str]
    leeway_seconds: int = LEEWAY_SECONDS

    @classmethod
    def entra(cls, tenant_ids: Iterable[str], audiences: Iterable[str], versions: Iterable[str]) -> TokenPolicy:
        """Entra ID: each tenant's v1 (sts.windows.net) and/or v2 (login.microsoftonline.com) issuer."""
        templates = [ENTRA_ISSUERS[v] for v in sorted(versions)]
        return cls({t: frozenset(x.format(tenant=t) for x in templates) for t in tenant_ids}, frozenset(audiences))

    @classmethod
    def dev(cls, tenant_ids: Iterable[str], audiences: Iterable[str]) -> TokenPolicy:
        """devhost's local issuer, one per tenant."""
        return cls({t: frozenset({DEV_ISSUER.format(tenant=t)}) for t in tenant_ids}, frozenset(audiences))


@dataclass(frozen=True)
class Principal:
    """Who a valid token speaks for: tenant, object id (user or service principal), its app roles, and
    for a delegated token (one with `scp`) the scopes its client application was granted."""

    tenant_id: str
    object_id: str
    roles: frozenset[str]
    scopes: frozenset[str] | None = None

    def holds(self, permission: str) -> bool:
        """Whether the principal may act with `permission`. The app role decides (Jobs.Admin holds every
        role). A delegated token acts for a user through a client, so the client's scope of the same name
        must also be granted: in Entra ID a scope is consented to a client app, never granted to a user,
        so a scope alone grants nothing."""
        return _grants(self.roles, permission) and (self.scopes is None or _grants(self.scopes, permission))


def _grants(granted: frozenset[str], permission: str) -> bool:
    return permission in granted or ADMIN in granted


class TokenValidator:
    """Checks bearer tokens against a policy with signing keys from one JWKS cache."""

    def __init__(self, policy: TokenPolicy, keys: JwksCache) -> None:
        if not policy.issuers or not policy.audiences:
            raise ValueError("a token policy needs at least one tenant and one audience")
        self.policy = policy
        self.keys = keys

    def validate(self, token: str) -> Principal:
        """The principal of a valid token; InvalidTokenError (401) for anything else."""
        if len(token) > _MAX_TOKEN_CHARS or not _is_compact_jws(token):
            raise InvalidTokenError("the bearer token is malformed")
        key = self._signing_key(token)
        claims = self._decode(token, key)
        _check_claim_types(claims)
        return _principal(claims, self.policy)

    def _signing_key(self, token: str) -> jwt.PyJWK:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidTokenError("the bearer token is malformed") from exc
        if header.get("alg") != SIGNING_ALGORITHM:
            raise InvalidTokenError(f"the token must be signed with {SIGNING_ALGORITHM}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidTokenError("the token names no signing key (kid)")
        key = self.keys.get(kid)
        if key is None:
            raise InvalidTokenError("the token is signed by an unknown key")
        return key

    def _decode(self, token: str, key: jwt.PyJWK) -> dict[str, Any]:
        try:
            return jwt.decode(token, key=key.key, algorithms=[SIGNING_ALGORITHM], audience=sorted(self.policy.audiences),
                              leeway=self.policy.leeway_seconds, options={"require": _REQUIRED_CLAIMS})
        except jwt.ExpiredSignatureError as exc:
            raise InvalidTokenError("the token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise InvalidTokenError("the token is not valid yet") from exc
        except jwt.InvalidAudienceError as exc:
            raise InvalidTokenError("the token is not issued for this API (aud)") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidTokenError(f"the token has no {exc.claim} claim") from exc
        except jwt.PyJWTError as exc:
            raise InvalidTokenError(f"the token is not valid: {exc}") from exc


def _is_compact_jws(token: str) -> bool:
    """Three unpadded base64url segments in canonical form: PyJWT pads before decoding and ignores
    unused bits, so `==` or another last character after a signature would still verify."""
    match = _COMPACT_JWS.match(token)
    return match is not None and all(_canonical_base64url(segment) for segment in match.groups())


def _canonical_base64url(segment: str) -> bool:
    try:
        decoded = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return False
    return base64.urlsafe_b64encode(decoded).rstrip(b"=").decode() == segment


def _check_claim_types(claims: dict[str, Any]) -> None:
    """Claims of the types Entra ID issues; PyJWT takes `exp: "9999999999"` (a string) and leaves `iss`
    as whatever the token holds."""
    for name in _TIME_CLAIMS:
        value = claims[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidTokenError(f"the token's {name} claim is not a number")
    for name in ("iss", "tid", "oid"):
        if not isinstance(claims[name], str):
            raise InvalidTokenError(f"the token's {name} claim is not a string")
    roles, scopes = claims.get("roles", []), claims.get("scp", "")
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        raise InvalidTokenError("the token's roles claim is not a list of strings")
    if not isinstance(scopes, str):
        raise InvalidTokenError("the token's scp claim is not a string")


def _principal(claims: dict[str, Any], policy: TokenPolicy) -> Principal:
    tenant = _guid(claims.get("tid"))
    if tenant is None or tenant not in policy.issuers:
        raise InvalidTokenError("the token's tenant is not allowed")
    if claims.get("iss") not in policy.issuers[tenant]:
        raise InvalidTokenError("the token's issuer is not accepted")
    object_id = _guid(claims.get("oid"))
    if object_id is None:
        raise InvalidTokenError("the token's oid is not an object id")
    scopes = claims.get("scp")
    return Principal(tenant, object_id, frozenset(claims.get("roles", [])),
                     None if scopes is None else frozenset(scopes.split()))


def _guid(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return str(UUID(value))
    except ValueError:
        return None


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header; MissingTokenError without one."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise MissingTokenError("a bearer token from Microsoft Entra ID is required")
    return token.strip()


def token_validator(settings: Settings) -> TokenValidator:
    """The validator the settings describe (entra or dev mode)."""
    if not (settings.tenant_ids and settings.audiences):
        raise ValueError("TRAWL_AUTH_TENANT_IDS and TRAWL_AUTH_AUDIENCES are required "
                         "(locally, TRAWL_AUTH_MODE=dev as in local.settings.sample.json)")
    if settings.auth_mode == "dev":
        policy = TokenPolicy.dev(settings.tenant_ids, settings.audiences)
    else:
        policy = TokenPolicy.entra(settings.tenant_ids, settings.audiences, settings.issuer_versions)
    fetch = http_jwks_fetcher(settings.auth_jwks_url or ENTRA_JWKS_URL)
    log.info("validating %s bearer tokens for tenants %s", settings.auth_mode, ", ".join(sorted(policy.issuers)))
    return TokenValidator(policy, JwksCache(fetch, refetch_interval_seconds=settings.auth_jwks_refetch_seconds))


@lru_cache(maxsize=1)
def get_token_validator() -> TokenValidator:
    """The process-wide validator (its key cache is shared by every request)."""
    return token_validator(get_settings())
