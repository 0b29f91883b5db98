"""Keeps credentials and scraped URLs' secrets out of logs and traces.

What is removed: bearer tokens, Authorization header values and JWTs; every absolute URL is reduced
to its scheme and host (and port): paths, query strings, fragments and user-info of scraped URLs
carry API keys, signatures and session tokens (`?api_key=`, `X-Amz-Signature=`, `/reset/<token>`).
Relative references keep their path but lose their query (`?…=…`), and urllib3's "with url: <path>"
loses the path. Line separators and other control characters are escaped, so a value from a page or
a caller can never forge a log line (U+0085, U+2028 and U+2029 end lines in many log viewers too).

`install_log_redaction()` wraps the log record factory, so every record of every logger is redacted
when it is created, whichever handlers (the Functions worker's, OpenTelemetry's) are added later.
"""
from __future__ import annotations

import logging
import re
from typing import Any

REDACTED = "[REDACTED]"

_AUTHORIZATION = re.compile(r"""(?i)(\bauthorization\b["']?\s*[:=]\s*["']?)[^"',}\r\n]+""")
_BEARER = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9\-_.~+/]+=*")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
# An absolute URL up to whitespace, a quote or an angle bracket: how URLs sit in messages and reprs.
_ABSOLUTE_URL = re.compile(r"""(?i)\b([a-z][a-z0-9+.\-]*)://([^\s"'<>`]*)""")
_AUTHORITY_END = re.compile(r"[/?#\\]")
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]*\]|[^:@\[\]]*)(:[0-9]*)?$")
_SENTENCE_END = ".,;:!"
_BRACKETS = {")": "(", "]": "["}
_URLLIB3_PATH = re.compile(r"(\bwith url: )\S+")
_QUERY = re.compile(r"""\?[^\s"'<>#?=&]*=[^\s"'<>`]*""")
# Every C0 control but tab, DEL, every C1 control (U+0085 among them), the Unicode line and paragraph
# separators, and lone surrogates (which no log handler can encode); `_TRACEBACK_CONTROLS` keeps the
# newlines that structure a traceback.
_CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_TRACEBACK_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r"}


def redact(text: str) -> str:
    """`text` with credentials replaced by [REDACTED], URLs reduced to scheme and host, and control
    characters escaped: one line, safe for a log."""
    return _CONTROLS.sub(_escape, _redact_values(text))


def redact_multiline(text: str) -> str:
    """`redact` for a traceback: its newlines are kept, every other control character is escaped."""
    return _TRACEBACK_CONTROLS.sub(_escape, _redact_values(text))


def url_origin(url: str) -> str:
    """`scheme://host[:port]` of an absolute URL, without user-info, path, query or fragment, and with
    control characters escaped; a string that is not one gives `[REDACTED]`."""
    match = _ABSOLUTE_URL.match(url.strip())
    return _CONTROLS.sub(_escape, _origin(match)) if match else REDACTED


def _redact_values(text: str) -> str:
    text = _AUTHORIZATION.sub(lambda m: m.group(1) + REDACTED, text)
    text = _BEARER.sub("Bearer " + REDACTED, text)
    text = _JWT.sub(REDACTED, text)
    text = _ABSOLUTE_URL.sub(_origin, text)
    text = _URLLIB3_PATH.sub(lambda m: m.group(1) + REDACTED, text)
    return _QUERY.sub("?" + REDACTED, text)


def _origin(match: re.Match[str]) -> str:
    """The scheme and host[:port] of a matched URL, keeping punctuation that closes the sentence or
    bracket it sits in. An authority that is not a plausible host (a password holding `/` or `?`
    splits early, leaving `user:pass`) is redacted whole."""
    scheme, rest = match.group(1), match.group(2)
    url = _without_closing_punctuation(rest)
    host = _AUTHORITY_END.split(url, maxsplit=1)[0].rpartition("@")[2]
    return f"{scheme}://{host if _HOST.match(host) else REDACTED}{rest[len(url):]}"


def _without_closing_punctuation(url: str) -> str:
    """`url` without the `.`, `,`, `)` ... that end the sentence or bracket around it; a bracket the URL
    itself opened (`/wiki/A_(b)`) stays."""
    while url:
        last = url[-1]
        if last in _SENTENCE_END or (last in _BRACKETS and url.count(_BRACKETS[last]) < url.count(last)):
            url = url[:-1]
        else:
            return url
    return url


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    code = ord(char)
    return _NAMED_ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (and its exception text) with credentials redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # bad placeholders: left as is for the handler to report when it emits
            return True
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_multiline(logging.Formatter().formatException(record.exc_info))
        return True


def install_log_redaction() -> None:
    """Redact every log record this process creates from now on; calling it again changes nothing."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacts", False):
        return
    redacting = RedactingFilter()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redacting.filter(record)
        return record

    factory.redacts = True  # type: ignore[attr-defined]  # a marker on the function, read back with getattr above
    logging.setLogRecordFactory(factory)
