"""Where the CLI's token comes from: flags, then the environment; one way at a time; renewed before expiry."""
from __future__ import annotations

import logging
import sys
from typing import Any

import azure.identity
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import CredentialUnavailableError

from trawl_cli import auth
from trawl_cli.__main__ import main
from trawl_cli.auth import CachedToken, CredentialOptions, resolve_token
from trawl_cli.client import TokenSource
from trawl_cli.errors import UsageError

LOCAL = "http://127.0.0.1:7071"
SCOPE_ENV = {"TRAWL_API_SCOPE": "api://env/.default"}


@pytest.fixture(autouse=True)
def labelled_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dev and Entra sources that say which they are instead of minting or signing in."""
    monkeypatch.setattr(auth, "dev_token", lambda user, api_url: lambda: f"dev:{user}")
    monkeypatch.setattr(auth, "entra_token", lambda scope: lambda: f"entra:{scope}")


def token_of(options: CredentialOptions, environ: dict[str, str] | None = None, api_url: str = LOCAL) -> str:
    source: TokenSource = resolve_token(options, api_url, environ or {})
    return source()


@pytest.mark.parametrize(("options", "environ", "token"), [
    (CredentialOptions(token=" flag "), {"TRAWL_TOKEN": "env", **SCOPE_ENV}, "flag"),
    (CredentialOptions(dev_user="alice"), {"TRAWL_TOKEN": "env", **SCOPE_ENV}, "dev:alice"),
    (CredentialOptions(scope="api://flag/.default"), {"TRAWL_TOKEN": "env"}, "entra:api://flag/.default"),
    (CredentialOptions(), {"TRAWL_TOKEN": "env", **SCOPE_ENV}, "env"),
    (CredentialOptions(), {"TRAWL_TOKEN": "  ", **SCOPE_ENV}, "entra:api://env/.default"),
    (CredentialOptions(), SCOPE_ENV, "entra:api://env/.default"),
])
def test_flags_win_over_the_environment_and_a_token_over_a_scope(options: CredentialOptions,
                                                                  environ: dict[str, str], token: str) -> None:
    assert token_of(options, environ) == token


def test_two_ways_to_authenticate_at_once_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--token and --scope cannot be used together"):
        resolve_token(CredentialOptions(token="t", scope="s"), LOCAL, {})


def test_no_credentials_at_all_is_a_usage_error_that_says_what_to_do() -> None:
    with pytest.raises(UsageError, match=r"TRAWL_TOKEN.*--dev-user.*TRAWL_API_SCOPE"):
        resolve_token(CredentialOptions(), LOCAL, {"TRAWL_API_URL": LOCAL})


@pytest.mark.parametrize("api_url", ["https://trawl.example.com", "http://10.0.0.5:7071", "http://127.0.0.1.nip.io"])
def test_dev_tokens_are_only_for_a_devhost_on_this_machine(api_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # the real dev_token, which refuses before minting anything
    with pytest.raises(UsageError, match="only works against a devhost on this machine"):
        auth.dev_token("alice", api_url)


def test_a_cached_token_is_fetched_again_shortly_before_it_expires() -> None:
    now = [1000.0]
    fetched: list[str] = []

    def fetch() -> tuple[str, float]:
        fetched.append(f"t{len(fetched)}")
        return fetched[-1], now[0] + 3600

    token = CachedToken(fetch, clock=lambda: now[0])
    assert [token(), token()] == ["t0", "t0"]
    now[0] += 3600 - auth.RENEW_BEFORE_SECONDS - 1
    assert token() == "t0"
    now[0] += 1
    assert token() == "t1" and len(fetched) == 2


class NoAzureCli:
    """The Azure CLI's credential on a machine without it."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        raise CredentialUnavailableError("Azure CLI not found on path")


class UnreachableDeviceCode:
    """The device-code credential when the sign-in endpoint cannot be reached."""

    def __init__(self, **kwargs: Any) -> None:
        pass

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        raise ClientAuthenticationError("Authentication failed:\n  cannot reach login.microsoftonline.com")


def test_a_failed_scope_sign_in_is_one_line_that_says_why_each_way_failed(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.undo()  # the real entra_token, over fake credentials
    monkeypatch.setattr(azure.identity, "AzureCliCredential", NoAzureCli)
    monkeypatch.setattr(azure.identity, "DeviceCodeCredential", UnreachableDeviceCode)
    sdk_log = logging.getLogger("azure")
    monkeypatch.setattr(sdk_log, "handlers", [*sdk_log.handlers])  # what signing in does to the SDK's logger is
    monkeypatch.setattr(sdk_log, "propagate", sdk_log.propagate)  # undone after this test

    assert main(["--scope", "api://trawl/.default", "list"]) == 3

    assert capsys.readouterr().err == (
        "trawl: could not get an Entra ID token for api://trawl/.default: NoAzureCli: Azure CLI not found on path; "
        "UnreachableDeviceCode: Authentication failed: cannot reach login.microsoftonline.com\n")
    # The SDK's own multi-line warning reaches no handler, so it cannot add lines to stderr either.
    assert [record for record in caplog.records if record.name.startswith("azure")] == []


def test_dev_users_need_the_repository_s_devhost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "devhost.devauth", None)  # as for an installed `trawl`: no devhost to import
    with pytest.raises(UsageError, match=r"^--dev-user needs the Trawl repository's devhost .* TRAWL_TOKEN$"):
        auth.dev_token("alice", LOCAL)
