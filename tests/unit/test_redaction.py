"""No credentials in the logs: what the redacting record factory leaves of messages, arguments and tracebacks."""
from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from shared.adapters.redaction import REDACTED, install_log_redaction, redact, redact_multiline, url_origin

JWT = ("eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJvaWQiOiJiNWM2ZDdlOCIsInJvbGVzIjpbIkpvYnMuUmVhZCJdfQ."
       "c2lnbmF0dXJlLWJ5dGVzLWhlcmU")
SAS = "https://acct.blob.core.windows.net/c/b.json?sv=2024-05-04&se=2030-01-01&sp=r&sig=AbC%2Bdef%3D"


@pytest.mark.parametrize(("text", "secret"), [
    (f"Authorization: Bearer {JWT}", JWT),
    (f"{{'Authorization': 'Bearer {JWT}', 'Accept': 'application/json'}}", JWT),
    ("authorization=Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA"),
    (f"token was bearer {JWT[:40]}", JWT[:40]),
    (f"a bare JWT {JWT} in a message", JWT),
])
def test_credentials_are_redacted(text: str, secret: str) -> None:
    redacted = redact(text)
    assert secret not in redacted
    assert REDACTED in redacted


@pytest.mark.parametrize(("text", "expected"), [
    (f"GET {SAS} failed", "GET https://acct.blob.core.windows.net failed"),
    ("calling https://trawl.azurewebsites.net/api/jobs?code=fk-12345==&x=1", "calling https://trawl.azurewebsites.net"),
    ("redirected to https://app.example/cb?state=s&access_token=at-999", "redirected to https://app.example"),
    ("Blocked fetch of http://user:hunter2@169.254.169.254/latest?X-Amz-Signature=abc#frag: blocked",
     "Blocked fetch of http://169.254.169.254: blocked"),
    ("fetched https://example.com/reset/tok-8842/page?id=7&sort=asc in 120 ms (status 200)",
     "fetched https://example.com in 120 ms (status 200)"),
    ("see (http://example.com:8080/a/b?client_secret=cs-1), then", "see (http://example.com:8080), then"),
    ("http://user:pa/ss@host.example/x", "http://[REDACTED]"),  # a password holding `/` is not taken for the host
    ("'https://[2001:db8::1]:8443/p?q=1'", "'https://[2001:db8::1]:8443'"),
    ("Max retries exceeded with url: /tok/s3cr3t?api_key=k1 (Caused by NewConnectionError('refused'))",
     "Max retries exceeded with url: [REDACTED] (Caused by NewConnectionError('refused'))"),
    ("invalid redirect location '/next?session=abc&x=1'", "invalid redirect location '/next?[REDACTED]'"),
])
def test_urls_are_reduced_to_scheme_and_host(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_ordinary_messages_are_left_alone() -> None:
    text = "job 6f9619ff item 3: fetched from https://example.com in 120 ms (status 200)? yes"
    assert redact(text) == text


@pytest.mark.parametrize(("text", "expected"), [
    ("line one\nforged line", "line one\\nforged line"),
    ("a\r\nb", "a\\r\\nb"),
    ("next\u0085line", "next\\x85line"),
    ("line\u2028separator and paragraph\u2029separator", "line\\u2028separator and paragraph\\u2029separator"),
    ("nul\x00, bell\x07, escape\x1b[31m, delete\x7f, lone \ud800",
     "nul\\x00, bell\\x07, escape\\x1b[31m, delete\\x7f, lone \\ud800"),
    ("tabs\tstay", "tabs\tstay"),
])
def test_line_separators_and_control_characters_are_escaped(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_a_traceback_keeps_its_lines_but_not_other_separators() -> None:
    text = 'Traceback (most recent call last):\n  File "x.py"\nValueError: GET http://h/p?k=v\u2028forged'
    assert redact_multiline(text) == (
        'Traceback (most recent call last):\n  File "x.py"\nValueError: GET http://h\\u2028forged')


@pytest.mark.parametrize(("url", "origin"), [
    ("HTTPS://User:Pass@Example.COM:8443/p?q=1#f", "HTTPS://Example.COM:8443"),
    ("http://a\x07b/x", "http://a\\x07b"),
    ("not a url", REDACTED),
])
def test_url_origin_is_scheme_and_host_only(url: str, origin: str) -> None:
    assert url_origin(url) == origin


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

    log.warning("page said %s", "ok\u2028[ERROR] forged entry")

    output = captured.getvalue()
    assert JWT not in output and "AbC%2Bdef" not in output and "b.json" not in output
    assert "answered 403" in output and "download failed" in output
    assert "ValueError: could not fetch https://acct.blob.core.windows.net\n" in output
    assert "page said ok\\u2028[ERROR] forged entry\n" in output
    assert not {"\u2028", "\u2029", "\x85"} & set(output)


def test_the_factory_is_installed_once(captured: io.StringIO) -> None:
    factory = logging.getLogRecordFactory()
    install_log_redaction()
    assert logging.getLogRecordFactory() is factory
