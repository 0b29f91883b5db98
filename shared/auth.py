"""Bearer token validation for Entra ID access tokens (and devhost's local issuer in dev mode).

One code path for both modes: RS256 only (never the header's choice), a signature by a key from
the configured JWKS URL (never `jku`/`jwk`/`x5u` from the token), the issuer of the token's own
tenant, an allowed tenant, an accepted audience, and `exp`/`nbf`/`iat` within a 60 s leeway.
Dev mode changes only where the keys, issuers, tenants and audiences come from.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from uuid import UUID

import jwt

from shared.errors import Forbidden, Unauthorized
from shared.jwks import SIGNING_ALGORITHM, JwksCache, http_jwks_fetcher
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)

SUBMIT = "Jobs.Submit"
READ = "Jobs.Read"
ADMIN = "Jobs.Admin"

LEEWAY_SECONDS = 60
ENTRA_ISSUERS = {"1": "https://sts.windows.net/{tenant}/", "2": "https://login.microsoftonline.com/{tenant}/v2.0"}
ENTRA_JWKS_URL = "https://login.microsoftonline.com/common/discovery/v2.0/keys"
# devhost's local issuer (devhost/devauth.py): never an Entra ID issuer, so its tokens fail in entra mode.
DEV_ISSUER = "https://devhost.localhost/{tenant}/v2.0"

_REQUIRED_CLAIMS = ["exp", "nbf", "iat", "iss", "aud", "tid", "oid"]
_MAX_TOKEN_CHARS = 16 * 1024
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9\-_.~+/]+=*$")


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
        super().__init__(f"this operation needs the {role} role", required_role=role)


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
    """Who a valid token speaks for: tenant, object id (user or service principal), roles and scopes."""

    tenant_id: str
    object_id: str
    permissions: frozenset[str]


class TokenValidator:
    """Checks bearer tokens against a policy with signing keys from one JWKS cache."""

    def __init__(self, policy: TokenPolicy, keys: JwksCache) -> None:
        if not policy.issuers or not policy.audiences:
            raise ValueError("a token policy needs at least one tenant and one audience")
        self.policy = policy
        self.keys = keys

    def validate(self, token: str) -> Principal:
        """The principal of a valid token; InvalidTokenError (401) for anything else."""
        if len(token) > _MAX_TOKEN_CHARS or not _TOKEN_CHARS.match(token):
            raise InvalidTokenError("the bearer token is malformed")
        key = self._signing_key(token)
        claims = self._decode(token, key)
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


def _principal(claims: dict[str, Any], policy: TokenPolicy) -> Principal:
    tenant = _guid(claims.get("tid"))
    if tenant is None or tenant not in policy.issuers:
        raise InvalidTokenError("the token's tenant is not allowed")
    if claims.get("iss") not in policy.issuers[tenant]:
        raise InvalidTokenError("the token's issuer is not accepted")
    object_id = _guid(claims.get("oid"))
    if object_id is None:
        raise InvalidTokenError("the token's oid is not an object id")
    return Principal(tenant, object_id, _permissions(claims))


def _permissions(claims: dict[str, Any]) -> frozenset[str]:
    """App roles (`roles`, application and user assignments) plus delegated scopes (`scp`)."""
    roles = claims.get("roles")
    scopes = claims.get("scp")
    granted = {r for r in roles if isinstance(r, str)} if isinstance(roles, list) else set()
    if isinstance(scopes, str):
        granted |= set(scopes.split())
    return frozenset(granted)


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


def holds(permissions: frozenset[str], role: str) -> bool:
    """Whether these permissions allow `role`: Jobs.Admin allows everything."""
    return role in permissions or ADMIN in permissions


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
