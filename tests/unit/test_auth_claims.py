"""What a token's claims may grant, and that malformed claims and a slow key endpoint cannot hurt.

Permissions come from app roles; a delegated token (`scp`) also needs its client's scope of the same
name, and admin comes only from the role. Malformed claims are 401s. The JWKS cache fetches outside
its lock, once at a time, while tokens signed by keys it holds keep being validated.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import azure.functions as func
import jwt
import pytest

from api.callers import ADMIN, READ, SUBMIT, authorize
from api.http import handles_errors, json_response
from devhost import devauth
from devhost.devauth import DEFAULT_TENANT, DevIssuer
from shared.adapters.auth import InvalidTokenError, TokenPolicy, TokenValidator
from shared.adapters.jwks import JwksCache, http_jwks_fetcher
from tests.unit.test_auth import AUDIENCE, KEY, ROTATED_KEY, TENANT, USER, Clock, mint, public_jwk, rejected
from tests.unit.test_auth_api import dev_issuer, dev_mode  # noqa: F401 - fixtures used by name below

# --- what roles and scopes grant, through `authorize` and the problem responses -------------------------


def dev_claims_token(issuer: DevIssuer, **claims: Any) -> str:
    """A dev-issuer token for alice with exactly these extra claims (DevIssuer.mint sets roles only)."""
    now = int(time.time())
    base = {"iss": devauth.ISSUER.format(tenant=DEFAULT_TENANT), "aud": devauth.DEFAULT_AUDIENCE,
            "tid": DEFAULT_TENANT, "oid": devauth.object_id("alice"), "iat": now, "nbf": now, "exp": now + 600}
    key = issuer.private_key()
    kid = devauth.key_id(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True))
    payload = json.dumps({**base, **claims}).encode()  # signed as is: PyJWT's jwt.encode refuses a non-string iss
    return jwt.api_jws.encode(payload, key, algorithm="RS256", headers={"kid": kid})


@handles_errors
def endpoint(req: func.HttpRequest, role: str) -> func.HttpResponse:
    caller = authorize(req, role)
    return json_response({"every_owner": caller.scope is None})


def call(token: str, role: str) -> tuple[int, dict[str, Any]]:
    req = func.HttpRequest("GET", "http://127.0.0.1/api/jobs", headers={"Authorization": f"Bearer {token}"}, body=b"")
    response = endpoint(req, role)
    return response.status_code, json.loads(response.get_body())


@pytest.mark.usefixtures("dev_mode")
@pytest.mark.parametrize(("claims", "role", "status", "every_owner"), [
    ({"scp": "Jobs.Admin"}, READ, 403, None),                                     # a scope alone grants nothing
    ({"scp": "Jobs.Admin Jobs.Read", "roles": []}, READ, 403, None),
    ({"scp": "Jobs.Admin", "roles": [READ]}, READ, 200, False),                   # admin only from the role
    ({"scp": "Jobs.Read", "roles": [ADMIN]}, READ, 200, False),                   # the client was not granted admin
    ({"scp": "Jobs.Read", "roles": [ADMIN]}, SUBMIT, 403, None),
    ({"scp": "Jobs.Submit", "roles": [READ, SUBMIT]}, READ, 403, None),           # the client lacks Jobs.Read
    ({"scp": "Jobs.Admin", "roles": [ADMIN]}, READ, 200, True),
    ({"scp": "Jobs.Read Jobs.Submit", "roles": [READ, SUBMIT]}, SUBMIT, 200, False),
    ({"roles": [ADMIN]}, SUBMIT, 200, True),                                      # an application: roles only
    ({"roles": [READ]}, READ, 200, False),
])
def test_roles_grant_and_a_delegated_tokens_scopes_must_agree(
        dev_issuer: DevIssuer, claims: dict[str, Any], role: str, status: int,  # noqa: F811 - the imported fixture
        every_owner: bool | None) -> None:
    answered, body = call(dev_claims_token(dev_issuer, **claims), role)
    assert answered == status, body
    if status == 200:
        assert body == {"every_owner": every_owner}
    else:
        assert body["required_role"] == role


@pytest.mark.usefixtures("dev_mode")
@pytest.mark.parametrize("claims", [
    {"exp": str(int(time.time()) + 600)}, {"exp": True}, {"nbf": "0"}, {"iat": [1]},
    {"iss": [devauth.ISSUER.format(tenant=DEFAULT_TENANT)]}, {"iss": {"v": 1}}, {"tid": [DEFAULT_TENANT]},
    {"roles": "Jobs.Admin"}, {"roles": [ADMIN, 7]}, {"scp": ["Jobs.Admin"]},
])
def test_malformed_claims_are_401_never_500_or_accepted(
        dev_issuer: DevIssuer, claims: dict[str, Any]) -> None:  # noqa: F811 - the imported fixture
    status, body = call(dev_claims_token(dev_issuer, **claims), READ)
    assert (status, body["status"]) == (401, 401), body


# --- the token's form, against a validator of Entra tokens -------------------------------------------


class Jwks:
    """A JWKS endpoint on 127.0.0.1 whose answers can be held: `hold()` makes the next request wait for
    `release` (after `held` is set), so a test sees what happens while a fetch is in flight."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.hits = 0
        self.held = threading.Event()
        self.release = threading.Event()
        self.holding = False
        self._hold_next = False
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/keys"

    def hold(self) -> None:
        self._hold_next = True

    def _answer(self) -> bytes:
        self.hits += 1
        if self._hold_next:
            self._hold_next, self.holding = False, True
            self.held.set()
            # Bounded, and within the fetcher's 5 s read timeout: a cache that waited for this fetch gets its
            # answer after `holding` is cleared, and fails the test instead of hanging it.
            self.release.wait(4)
            self.holding = False
        return json.dumps(self.document).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = jwks._answer()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks() -> Iterator[Jwks]:
    server = Jwks({"keys": [public_jwk(KEY, "k1")]})
    yield server
    server.stop()


@pytest.fixture
def validator(jwks: Jwks) -> TokenValidator:
    policy = TokenPolicy.entra([TENANT], [AUDIENCE], ["2"])
    return TokenValidator(policy, JwksCache(http_jwks_fetcher(jwks.url), refetch_interval_seconds=300, clock=Clock()))


def _flip_unused_bits(segment: str) -> str:
    """The same signature bytes spelt with another last character (base64 decoders ignore its low bits)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return segment[:-1] + alphabet[alphabet.index(segment[-1]) ^ 1]


def test_padding_or_another_spelling_after_the_signature_is_401(validator: TokenValidator) -> None:
    token = mint()
    assert validator.validate(token).object_id == USER
    for forged in (token + "==", token + "=", _flip_unused_bits(token), token + ".x", " " + token):
        assert rejected(validator, forged) == "the bearer token is malformed"
    assert "Signature verification failed" in rejected(validator, token + "AA")  # other bytes: a wrong signature


def test_a_known_key_is_served_while_a_refetch_is_in_flight(validator: TokenValidator, jwks: Jwks) -> None:
    validator.validate(mint())  # k1 is cached
    jwks.hold()
    outcome: list[BaseException] = []
    refetch = threading.Thread(target=_validate_into, args=(validator, mint(kid="k-unknown"), outcome))
    refetch.start()
    assert jwks.held.wait(10), "the unknown key id did not cause a refetch"

    assert validator.validate(mint()).object_id == USER
    assert jwks.holding, "the known key waited for the refetch"
    jwks.release.set()
    refetch.join(10)
    assert [type(error) for error in outcome] == [InvalidTokenError]
    assert jwks.hits == 2


def test_lookups_needing_a_refetch_wait_for_the_one_in_flight(validator: TokenValidator, jwks: Jwks) -> None:
    validator.validate(mint())
    jwks.document = {"keys": [public_jwk(KEY, "k1"), public_jwk(ROTATED_KEY, "k2")]}
    jwks.hold()
    outcomes: list[list[BaseException]] = [[], [], []]
    first = threading.Thread(target=_validate_into, args=(validator, mint(ROTATED_KEY, kid="k2"), outcomes[0]))
    first.start()
    assert jwks.held.wait(10)
    others = [threading.Thread(target=_validate_into, args=(validator, mint(ROTATED_KEY, kid="k2"), outcome))
              for outcome in outcomes[1:]]
    for thread in others:
        thread.start()
    jwks.release.set()
    for thread in (first, *others):
        thread.join(10)
    assert outcomes == [[], [], []]  # every token signed by the rotated key is valid
    assert jwks.hits == 2  # one refetch for all of them


def _validate_into(validator: TokenValidator, token: str, errors: list[BaseException]) -> None:
    try:
        validator.validate(token)
    except InvalidTokenError as error:
        errors.append(error)


# --- devhost's token command ------------------------------------------------------------------------


def test_devhost_token_warns_on_an_unknown_role(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert devauth.main(["--user", "alice", "--roles", "Jobs.Read,Jobs.Raed", "--state-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr()
    assert printed.err == ("warning: 'Jobs.Raed' is not one of Trawl's roles (Jobs.Submit, Jobs.Read, Jobs.Admin); "
                           "the token carries it but it grants nothing\n")
    assert jwt.decode(printed.out.strip(), options={"verify_signature": False})["roles"] == ["Jobs.Read", "Jobs.Raed"]


def test_devhost_token_is_quiet_for_known_roles(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    devauth.main(["--user", "alice", "--roles", f"{SUBMIT},{READ},{ADMIN}", "--state-dir", str(tmp_path)])
    assert capsys.readouterr().err == ""
    assert set(devauth.KNOWN_ROLES) == {SUBMIT, READ, ADMIN}  # the roles the app checks
