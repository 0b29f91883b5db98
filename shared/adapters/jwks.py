"""The token signing keys of one issuer, fetched from its JWKS document and cached by key id.

The cache refreshes itself every `max_age_seconds` and, when a token names a key id it does not
know (a key rollover), fetches the document again at once, but at most once per
`refetch_interval_seconds`, so tokens with made-up key ids cannot make it hammer the endpoint.
A failed fetch keeps the keys already held: a key endpoint outage does not become an outage of
the API, and a slow one never holds up tokens signed by keys already held. Only the configured URL
is ever fetched; a token's own `jku`/`jwk`/`x5u` headers are never read.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import jwt
import requests

from shared.domain.errors import Unavailable

log = logging.getLogger(f"trawl.{__name__}")

JwksDocument = Mapping[str, Any]

SIGNING_ALGORITHM = "RS256"
MIN_RSA_KEY_BITS = 2048
_FETCH_TIMEOUT_SECONDS = (3.0, 5.0)
_MAX_DOCUMENT_BYTES = 512 * 1024
# How long a lookup that needs a fetch in flight waits for it: longer than the fetch's own timeouts.
_WAIT_FOR_FETCH_SECONDS = 10.0


class SigningKeysUnavailableError(Unavailable):
    """No signing keys are cached and the key endpoint cannot be reached: tokens cannot be checked."""


class JwksFetchError(Exception):
    """The JWKS document could not be fetched or holds no usable key."""


def http_jwks_fetcher(url: str) -> Callable[[], JwksDocument]:
    """A function that GETs the JWKS document at `url` (bounded time and size)."""

    def fetch() -> JwksDocument:
        try:
            response = requests.get(url, timeout=_FETCH_TIMEOUT_SECONDS, allow_redirects=False)
        except requests.RequestException as exc:
            raise JwksFetchError(f"GET {url} failed: {exc}") from exc
        if response.status_code != 200:
            raise JwksFetchError(f"GET {url} answered {response.status_code}")
        if len(response.content) > _MAX_DOCUMENT_BYTES:
            raise JwksFetchError(f"GET {url} answered more than {_MAX_DOCUMENT_BYTES} bytes")
        try:
            document = response.json()
        except ValueError as exc:
            raise JwksFetchError(f"GET {url} did not answer JSON") from exc
        if not isinstance(document, dict):
            raise JwksFetchError(f"GET {url} did not answer a JWKS object")
        return document

    return fetch


def signing_keys(document: JwksDocument) -> dict[str, jwt.PyJWK]:
    """The RS256 signature keys of a JWKS document by key id; other and weak keys are skipped."""
    keys: dict[str, jwt.PyJWK] = {}
    entries = document.get("keys")
    for entry in entries if isinstance(entries, list) else []:
        if not _usable(entry):
            continue
        try:
            key = jwt.PyJWK(entry, algorithm=SIGNING_ALGORITHM)
        except jwt.PyJWTError as exc:
            log.warning("skipping JWKS key %s: %s", entry.get("kid"), exc)
            continue
        if key.key.key_size >= MIN_RSA_KEY_BITS:
            keys[entry["kid"]] = key
    return keys


def _usable(entry: object) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("kid"), str) and entry.get("kty") == "RSA"
            and entry.get("use", "sig") == "sig" and entry.get("alg", SIGNING_ALGORITHM) == SIGNING_ALGORITHM)


class JwksCache:
    """Signing keys by key id, refreshed on age and, rate-limited, on an unknown key id.

    The lock guards only the cache's state, never a fetch: one caller fetches (single flight) while
    tokens signed by keys already held keep being validated; callers that need the fetch's result (an
    unknown key id, or no keys yet) wait for it."""

    def __init__(self, fetch: Callable[[], JwksDocument], *, refetch_interval_seconds: float = 300,
                 max_age_seconds: float = 12 * 3600, clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self._refetch_interval = refetch_interval_seconds
        self._max_age = max_age_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._loaded_at: float | None = None
        self._last_attempt: float | None = None
        self._last_unknown_kid_refetch: float | None = None
        self._in_flight: threading.Event | None = None

    def get(self, kid: str) -> jwt.PyJWK | None:
        """The key with this id, or None when the issuer does not publish it (after one allowed refetch).

        Raises SigningKeysUnavailableError only when no keys were ever fetched and fetching fails.
        """
        with self._lock:
            known = kid in self._keys
            own_fetch = self._claim_fetch(kid) if self._in_flight is None else None
            in_flight = self._in_flight
        if own_fetch is not None:
            self._refresh(own_fetch)
        elif not known and in_flight is not None:
            in_flight.wait(_WAIT_FOR_FETCH_SECONDS)
        with self._lock:
            if self._loaded_at is None:
                raise SigningKeysUnavailableError("the token signing keys cannot be fetched; try again later")
            return self._keys.get(kid)

    def _claim_fetch(self, kid: str) -> threading.Event | None:
        """Under the lock, with no fetch in flight: if this lookup calls for a fetch, mark one in flight
        (this caller makes it) and return the event that tells waiters it is over."""
        now = self._clock()
        if not self._due_for_refresh(now):
            if kid in self._keys or not self._may_refetch_for_unknown_kid(now):
                return None
            self._last_unknown_kid_refetch = now
            log.info("signing key %s is not cached: fetching the JWKS document again", kid)
        self._last_attempt = now
        self._in_flight = threading.Event()
        return self._in_flight

    def _due_for_refresh(self, now: float) -> bool:
        if self._loaded_at is None:
            return self._last_attempt is None or now - self._last_attempt >= 1.0
        stale = now - self._loaded_at >= self._max_age
        return stale and (self._last_attempt is None or now - self._last_attempt >= self._refetch_interval)

    def _may_refetch_for_unknown_kid(self, now: float) -> bool:
        last = self._last_unknown_kid_refetch
        return self._loaded_at is not None and (last is None or now - last >= self._refetch_interval)

    def _refresh(self, done: threading.Event) -> None:
        """Fetch outside the lock, then swap the keys in; waiters are released whatever happens."""
        attempted_at = self._last_attempt  # this caller's claim set it; no claim is made while a fetch is in flight
        try:
            keys = self._fetched_keys()
            with self._lock:
                if keys:
                    self._keys, self._loaded_at = keys, attempted_at
        finally:
            with self._lock:
                self._in_flight = None
            done.set()

    def _fetched_keys(self) -> dict[str, jwt.PyJWK]:
        """The document's usable keys; empty (logged) when it cannot be fetched or holds none."""
        try:
            keys = signing_keys(self._fetch())
        except JwksFetchError as exc:
            log.warning("fetching token signing keys failed (keeping %d cached keys): %s", len(self._keys), exc)
            return {}
        if not keys:
            log.warning("the JWKS document holds no usable RS256 key (keeping %d cached keys)", len(self._keys))
        return keys
