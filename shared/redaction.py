"""Keeps credentials out of the logs: bearer tokens, Authorization header values, JWTs, and URL query
strings that carry a signature, code or token (SAS `sig=`, function keys `code=`, `access_token=`).

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
_QUERY = re.compile(r"""\?[^\s"'<>#]+""")
_SECRET_PARAM = re.compile(r"(?i)(?:^|[?&;])(?:sig|code|[a-z_]*token)=")


def redact(text: str) -> str:
    """`text` with credentials replaced by [REDACTED]."""
    text = _AUTHORIZATION.sub(lambda m: m.group(1) + REDACTED, text)
    text = _BEARER.sub("Bearer " + REDACTED, text)
    text = _JWT.sub(REDACTED, text)
    return _QUERY.sub(lambda m: "?" + REDACTED if _SECRET_PARAM.search(m.group(0)) else m.group(0), text)


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
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
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

    factory.redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
