"""Bearer token validation against a real JWKS endpoint on 127.0.0.1, with tokens minted here.

Every rejection is checked as the InvalidTokenError (401, error="invalid_token") the API returns.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from shared.adapters.auth import InvalidTokenError, Principal, TokenPolicy, TokenValidator
from shared.adapters.jwks import JwksCache, SigningKeysUnavailableError, http_jwks_fetcher

TENANT = "3f2b8c1e-6a4d-4e0b-9c1f-2d7e8a9b0c11"
OTHER_TENANT = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
AUDIENCE = "api://trawl"
CLIENT_ID = "6e1d2c3b-4a59-4687-8b9a-0c1d2e3f4a5b"
USER = "b5c6d7e8-f9a0-4b1c-8d2e-3f4a5b6c7d8e"
V2_ISSUER = f"https://login.microsoftonline.com/{TENANT}/v2.0"
V1_ISSUER = f"https://sts.windows.net/{TENANT}/"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


KEY, ROTATED_KEY, ATTACKER_KEY = _key(), _key(), _key()


def public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    return {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "use": "sig", "alg": "RS256"}


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": V2_ISSUER, "aud": AUDIENCE, "tid": TENANT, "oid": USER, "sub": USER, "roles": ["Jobs.Read"],
            "iat": now, "nbf": now, "exp": now + 3600, "ver": "2.0"}
    return {k: v for k, v in {**base, **overrides}.items() if v is not None}


def mint(key: rsa.RSAPrivateKey = KEY, kid: str = "k1", headers: dict[str, Any] | None = None, **claim_overrides: Any) -> str:
    return jwt.encode(claims(**claim_overrides), key, algorithm="RS256", headers={"kid": kid, **(headers or {})})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed(header: dict[str, Any], payload: dict[str, Any], secret: bytes | None) -> str:
    """A JWS built by hand: `none` (no signature) or HS256 with `secret`, which PyJWT refuses to produce."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = b"" if secret is None else hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


@dataclass
class JwksServer:
    """Serves `document` at /keys on 127.0.0.1 and counts the requests; `failing` answers 500."""

    document: dict[str, Any]
    hits: int = 0
    failing: bool = False
    server: ThreadingHTTPServer = field(init=False)

    def __post_init__(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                body = json.dumps(outer.document).encode()
                self.send_response(500 if outer.failing else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/keys"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    server = JwksServer({"keys": [public_jwk(KEY, "k1")]})
    yield server
    server.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def validator_for(server: JwksServer, clock: Clock, versions: tuple[str, ...] = ("2",),
                  tenants: tuple[str, ...] = (TENANT,)) -> TokenValidator:
    policy = TokenPolicy.entra(tenants, [AUDIENCE, CLIENT_ID], versions)
    return TokenValidator(policy, JwksCache(http_jwks_fetcher(server.url), refetch_interval_seconds=300, clock=clock))


@pytest.fixture
def validator(jwks: JwksServer, clock: Clock) -> TokenValidator:
    return validator_for(jwks, clock)


def rejected(validator: TokenValidator, token: str) -> str:
    with pytest.raises(InvalidTokenError) as caught:
        validator.validate(token)
    assert (caught.value.status, caught.value.bearer_error) == (401, "invalid_token")
    return caught.value.detail


def test_a_valid_token_gives_the_principal(validator: TokenValidator) -> None:
    principal = validator.validate(mint(roles=["Jobs.Submit", "Jobs.Read"], scp="Jobs.Admin other"))
    assert principal == Principal(TENANT, USER, frozenset({"Jobs.Submit", "Jobs.Read"}), frozenset({"Jobs.Admin", "other"}))


def test_the_client_id_is_an_accepted_audience_too(validator: TokenValidator) -> None:
    assert validator.validate(mint(aud=CLIENT_ID)).object_id == USER


def test_v1_issuer_is_accepted_only_when_configured(jwks: JwksServer, clock: Clock) -> None:
    assert "issuer" in rejected(validator_for(jwks, clock, versions=("2",)), mint(iss=V1_ISSUER))
    assert validator_for(jwks, clock, versions=("1", "2")).validate(mint(iss=V1_ISSUER)).tenant_id == TENANT


def test_expired_token_is_rejected_beyond_60_seconds_of_leeway(validator: TokenValidator) -> None:
    now = int(time.time())
    assert validator.validate(mint(exp=now - 30)).object_id == USER  # clock skew is tolerated
    assert rejected(validator, mint(exp=now - 90)) == "the token has expired"


def test_token_not_valid_yet_is_rejected(validator: TokenValidator) -> None:
    now = int(time.time())
    assert rejected(validator, mint(nbf=now + 300)) == "the token is not valid yet"
    assert rejected(validator, mint(iat=now + 300)) == "the token is not valid yet"


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat", "aud", "iss", "tid", "oid"])
def test_required_claims_must_be_present(validator: TokenValidator, claim: str) -> None:
    missing: dict[str, Any] = {claim: None}
    assert rejected(validator, mint(**missing)) == f"the token has no {claim} claim"


def test_wrong_audience_is_rejected(validator: TokenValidator) -> None:
    assert "aud" in rejected(validator, mint(aud="api://someone-else"))


def test_wrong_issuer_is_rejected(validator: TokenValidator) -> None:
    assert "issuer" in rejected(validator, mint(iss=f"https://login.microsoftonline.com/{OTHER_TENANT}/v2.0"))
    assert "issuer" in rejected(validator, mint(iss="https://devhost.localhost/" + TENANT + "/v2.0"))


def test_a_tenant_not_allowed_is_rejected(validator: TokenValidator) -> None:
    token = mint(tid=OTHER_TENANT, iss=f"https://login.microsoftonline.com/{OTHER_TENANT}/v2.0")
    assert rejected(validator, token) == "the token's tenant is not allowed"


def test_oid_must_be_an_object_id(validator: TokenValidator) -> None:
    assert "oid" in rejected(validator, mint(oid="alice"))


def test_alg_none_is_rejected(validator: TokenValidator) -> None:
    token = hand_signed({"alg": "none", "kid": "k1", "typ": "JWT"}, claims(), None)
    assert rejected(validator, token) == "the token must be signed with RS256"


def test_hs256_signed_with_the_public_key_as_secret_is_rejected(validator: TokenValidator, jwks: JwksServer) -> None:
    pem = KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    for secret in (pem, json.dumps(jwks.document["keys"][0]).encode()):
        token = hand_signed({"alg": "HS256", "kid": "k1", "typ": "JWT"}, claims(roles=["Jobs.Admin"]), secret)
        assert rejected(validator, token) == "the token must be signed with RS256"


def test_a_bad_signature_is_rejected(validator: TokenValidator) -> None:
    assert "Signature verification failed" in rejected(validator, mint(key=ATTACKER_KEY, kid="k1"))


def test_garbage_is_rejected(validator: TokenValidator, jwks: JwksServer) -> None:
    for token in ("not-a-jwt", "a.b.c", "x" * 20_000, "eyJ0eXAi OiJKV1Qi"):
        assert rejected(validator, token) == "the bearer token is malformed"
    assert jwks.hits == 0


def test_unknown_kid_refetches_once_then_401(validator: TokenValidator, jwks: JwksServer, clock: Clock) -> None:
    validator.validate(mint())
    assert jwks.hits == 1

    assert rejected(validator, mint(kid="unknown")) == "the token is signed by an unknown key"
    assert jwks.hits == 2
    assert rejected(validator, mint(kid="unknown-2")) == "the token is signed by an unknown key"
    assert jwks.hits == 2  # rate-limited: made-up key ids cannot make us hammer the endpoint

    clock.now += 300
    rejected(validator, mint(kid="unknown-3"))
    assert jwks.hits == 3


def test_key_rotation_is_picked_up_with_one_refetch(validator: TokenValidator, jwks: JwksServer) -> None:
    validator.validate(mint())
    jwks.document = {"keys": [public_jwk(ROTATED_KEY, "k2")]}

    assert validator.validate(mint(key=ROTATED_KEY, kid="k2")).object_id == USER
    assert jwks.hits == 2
    assert rejected(validator, mint()) == "the token is signed by an unknown key"  # k1 was withdrawn


def test_cached_keys_keep_working_while_the_endpoint_is_down(validator: TokenValidator, jwks: JwksServer,
                                                             clock: Clock) -> None:
    validator.validate(mint())
    jwks.failing = True
    clock.now += 13 * 3600  # past the cache's max age: a refresh is attempted and fails
    assert validator.validate(mint()).object_id == USER
    assert jwks.hits == 2
    jwks.stop()
    clock.now += 3600
    assert validator.validate(mint()).object_id == USER


def test_no_keys_and_no_endpoint_is_503_not_401(jwks: JwksServer, clock: Clock) -> None:
    jwks.failing = True
    with pytest.raises(SigningKeysUnavailableError) as caught:
        validator_for(jwks, clock).validate(mint())
    assert caught.value.status == 503


def test_jku_jwk_and_x5u_headers_are_ignored(validator: TokenValidator, jwks: JwksServer) -> None:
    attacker = JwksServer({"keys": [public_jwk(ATTACKER_KEY, "evil")]})
    try:
        embedded = public_jwk(ATTACKER_KEY, "evil")
        for kid in ("evil", "k1"):
            token = mint(key=ATTACKER_KEY, kid=kid, roles=["Jobs.Admin"],
                         headers={"jku": attacker.url, "jwk": embedded, "x5u": attacker.url})
            rejected(validator, token)
        assert attacker.hits == 0
    finally:
        attacker.stop()


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_weak_and_non_signing_keys_in_the_jwks_are_skipped(jwks: JwksServer, clock: Clock) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    jwks.document = {"keys": [public_jwk(weak, "weak"), {**public_jwk(KEY, "enc"), "use": "enc"}, public_jwk(KEY, "k1")]}
    validator = validator_for(jwks, clock)
    assert validator.validate(mint()).object_id == USER
    assert rejected(validator, mint(key=weak, kid="weak")) == "the token is signed by an unknown key"
    assert rejected(validator, mint(kid="enc")) == "the token is signed by an unknown key"
