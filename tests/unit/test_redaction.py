"""No credentials in the logs: what the redacting record factory leaves of messages, arguments and tracebacks."""
from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from shared.redaction import REDACTED, install_log_redaction, redact

JWT = ("eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJvaWQiOiJiNWM2ZDdlOCIsInJvbGVzIjpbIkpvYnMuUmVhZCJdfQ."
       "c2lnbmF0dXJlLWJ5dGVzLWhlcmU")
SAS = "https://acct.blob.core.windows.net/c/b.json?sv=2024-05-04&se=2030-01-01&sp=r&sig=AbC%2Bdef%3D"


@pytest.mark.parametrize(("text", "secret"), [
    (f"Authorization: Bearer {JWT}", JWT),
    (f"{{'Authorization': 'Bearer {JWT}', 'Accept': 'application/json'}}", JWT),
    ("authorization=Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA"),
    (f"token was bearer {JWT[:40]}", JWT[:40]),
    (f"a bare JWT {JWT} in a message", JWT),
    (f"GET {SAS} failed", "AbC%2Bdef"),
    ("calling https://trawl.azurewebsites.net/api/jobs?code=fk-12345==&x=1", "fk-12345"),
    ("redirected to https://app.example/cb?state=s&access_token=at-999", "at-999"),
])
def test_credentials_are_redacted(text: str, secret: str) -> None:
    redacted = redact(text)
    assert secret not in redacted
    assert REDACTED in redacted


def test_ordinary_urls_and_messages_are_left_alone() -> None:
    text = "job 6f9619ff: fetched https://example.com/page?id=7&sort=asc in 120 ms (status 200)"
    assert redact(text) == text


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """A logger whose handler is added *after* redaction is installed, as the worker's and OpenTelemetry's are."""
    previous = logging.getLogRecordFactory()
    install_log_redaction()
    install_log_redaction()  # idempotent: one wrapper, not two
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("trawl.test.redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield stream
    logger.removeHandler(handler)
    logging.setLogRecordFactory(previous)


def test_log_records_are_redacted_whatever_the_handler(captured: io.StringIO) -> None:
    log = logging.getLogger("trawl.test.redaction")
    log.info("request headers %s", {"Authorization": f"Bearer {JWT}"})
    log.warning("GET %s answered %d", SAS, 403)
    try:
        raise ValueError(f"could not fetch {SAS}")
    except ValueError:
        log.exception("download failed")

    output = captured.getvalue()
    assert JWT not in output and "AbC%2Bdef" not in output
    assert "answered 403" in output and "download failed" in output
    assert "ValueError: could not fetch https://acct.blob.core.windows.net/c/b.json?[REDACTED]" in output


def test_the_factory_is_installed_once(captured: io.StringIO) -> None:
    factory = logging.getLogRecordFactory()
    install_log_redaction()
    assert logging.getLogRecordFactory() is factory
