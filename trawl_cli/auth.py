"""Where the CLI's access token comes from, first match wins:

1. `--token TOKEN`, `--dev-user NAME` or `--scope SCOPE` on the command line (at most one of them);
2. the environment: `TRAWL_TOKEN`, then `TRAWL_API_SCOPE`.

`--dev-user` mints a token of devhost's local issuer in this process (with the key in the repo's
`.devhost/`), which only a local devhost in dev auth mode accepts, so it is refused for any API URL
that is not on this machine. A scope gets an Entra ID token from the Azure CLI's sign-in, or else
through a device-code sign-in; tokens are cached and renewed shortly before they expire.
"""
from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from trawl_cli.client import TokenSource, one_line
from trawl_cli.errors import CredentialError, UsageError

REPO = Path(__file__).resolve().parents[1]
DEVHOST_STATE = REPO / ".devhost"
DEV_ROLES = ["Jobs.Submit", "Jobs.Read"]
DEV_TOKEN_MINUTES = 60
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
RENEW_BEFORE_SECONDS = 300


@dataclass(frozen=True)
class CredentialOptions:
    """The credential flags as given (None when absent)."""

    token: str | None = None
    dev_user: str | None = None
    scope: str | None = None


def resolve_token(options: CredentialOptions, api_url: str, environ: Mapping[str, str]) -> TokenSource:
    """The token source the flags and environment select (see the module docstring for the order)."""
    given = [name for name, value in (("--token", options.token), ("--dev-user", options.dev_user),
                                      ("--scope", options.scope)) if value]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)} cannot be used together: pick one way to authenticate")
    if options.token:
        return static_token(options.token)
    if options.dev_user:
        return dev_token(options.dev_user, api_url)
    if options.scope:
        return entra_token(options.scope)
    if environ.get("TRAWL_TOKEN", "").strip():
        return static_token(environ["TRAWL_TOKEN"])
    if environ.get("TRAWL_API_SCOPE", "").strip():
        return entra_token(environ["TRAWL_API_SCOPE"].strip())
    raise UsageError("no credentials: pass --token or set TRAWL_TOKEN, use --dev-user NAME against a local "
                     "devhost, or give an Entra ID scope with --scope or TRAWL_API_SCOPE")


def static_token(token: str) -> TokenSource:
    """A token given as is (its expiry is the caller's business)."""
    value = token.strip()
    return lambda: value


def dev_token(user: str, api_url: str) -> TokenSource:
    """Tokens of devhost's dev issuer for `user` with the submit and read roles, renewed before they expire."""
    host = urlsplit(api_url).hostname or ""
    if host not in LOCAL_HOSTS:
        raise UsageError(f"--dev-user only works against a devhost on this machine, not {host or api_url!r}")
    try:
        from devhost.devauth import DevIssuer  # the repo's devhost: only needed for local development
    except ImportError:  # an installed `trawl` has no devhost beside it
        raise UsageError("--dev-user needs the Trawl repository's devhost (`python -m trawl_cli` in the repository); "
                         "elsewhere pass a token from `python -m devhost token` with --token or TRAWL_TOKEN") from None
    issuer = DevIssuer(DEVHOST_STATE)
    return CachedToken(lambda: (issuer.mint(user, DEV_ROLES, minutes=DEV_TOKEN_MINUTES),
                                time.time() + DEV_TOKEN_MINUTES * 60))


def entra_token(scope: str) -> TokenSource:
    """Entra ID tokens for `scope`: the Azure CLI's signed-in account, else a device-code sign-in."""
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import AzureCliCredential, ChainedTokenCredential, DeviceCodeCredential

    # The SDK also logs each failed sign-in as a multi-line warning on stderr: the error raised below says it
    # all in one line.
    sdk_log = logging.getLogger("azure")
    sdk_log.addHandler(logging.NullHandler())
    sdk_log.propagate = False
    credential = ChainedTokenCredential(AzureCliCredential(), DeviceCodeCredential(prompt_callback=_device_code_prompt))

    def fetch() -> tuple[str, float]:
        try:
            access = credential.get_token(scope)
        except ClientAuthenticationError as exc:
            reason = one_line(sign_in_failure(exc.message or str(exc)))
            raise CredentialError(f"could not get an Entra ID token for {scope}: {reason}") from None
        return access.token, float(access.expires_on)

    return CachedToken(fetch)


def sign_in_failure(message: str) -> str:
    """What each way of signing in said, from ChainedTokenCredential's message (its `Attempted credentials:`,
    without the preamble and the link to a troubleshooting guide); other messages as they are."""
    attempts = message.partition("Attempted credentials:")[2].partition("To mitigate this issue")[0]
    said = [attempt.strip() for attempt in attempts.split("\n\t") if attempt.strip()]
    return "; ".join(said) if said else message


class CachedToken:
    """A token from `fetch` (token, expires-at epoch seconds), fetched again once it is about to expire."""

    def __init__(self, fetch: Callable[[], tuple[str, float]], clock: Callable[[], float] = time.time) -> None:
        self._fetch = fetch
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0

    def __call__(self) -> str:
        if self._token is None or self._clock() >= self._expires_at - RENEW_BEFORE_SECONDS:
            self._token, self._expires_at = self._fetch()
        return self._token


def _device_code_prompt(verification_uri: str, user_code: str, expires_on: Any) -> None:
    sys.stderr.write(f"trawl: to sign in, open {verification_uri} and enter the code {user_code}\n")
