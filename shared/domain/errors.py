"""Domain errors, each knowing its HTTP status, rendered once at the edge as RFC 9457 problems."""
from __future__ import annotations

from typing import Any

PROBLEM_TYPE_BASE = "https://trawl.dev/problems/"


class TrawlError(Exception):
    """Base of every error a caller may see; `status` and `slug` pick the problem type."""

    status = 500
    slug = "internal"
    title = "Internal error"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        """The application/problem+json body for this error."""
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        return {**body, **self.extensions}


class BadRequest(TrawlError):
    status, slug, title = 400, "bad-request", "Bad request"


class Unauthorized(TrawlError):
    status, slug, title = 401, "unauthorized", "Authentication required"


class Forbidden(TrawlError):
    status, slug, title = 403, "forbidden", "Not allowed"


class NotFound(TrawlError):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(TrawlError):
    status, slug, title = 409, "conflict", "Conflict"


class PayloadTooLarge(TrawlError):
    status, slug, title = 413, "payload-too-large", "Request body too large"


class UnsupportedMediaType(TrawlError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class ValidationFailed(TrawlError):
    status, slug, title = 422, "validation-failed", "Request is not valid"


class RateLimited(TrawlError):
    status, slug, title = 429, "rate-limited", "Too many requests"

    def __init__(self, detail: str, retry_after: int, **extensions: Any) -> None:
        super().__init__(detail, retry_after=retry_after, **extensions)
        self.retry_after = retry_after


class Unavailable(TrawlError):
    """A dependency (PostgreSQL, Storage) cannot be reached: a delay for the caller, never a loss."""

    status, slug, title = 503, "unavailable", "A dependency is unavailable"

    def __init__(self, detail: str, retry_after: int = 5, **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        self.retry_after = retry_after


class DatabaseUnavailable(Unavailable):
    """PostgreSQL refused or dropped the connection (failover, restart, connection limit)."""

    def __init__(self, detail: str = "the database is unavailable; try again shortly", retry_after: int = 5) -> None:
        super().__init__(detail, retry_after)


class StorageUnavailable(Unavailable):
    """Azure Storage (queues, tables) did not answer or answered with a server error."""

    def __init__(self, detail: str = "storage is unavailable; try again shortly", retry_after: int = 5) -> None:
        super().__init__(detail, retry_after)
