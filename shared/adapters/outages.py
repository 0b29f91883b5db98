"""Which adapter exceptions mean "a dependency is unreachable": a 503 with Retry-After for callers,
a delay for workers, never a lost job."""
from __future__ import annotations

from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

from shared.adapters.db import is_connection_error
from shared.domain.errors import DatabaseUnavailable, StorageUnavailable, Unavailable


def as_unavailable(exc: BaseException) -> Unavailable | None:
    """The Unavailable error that `exc` amounts to, or None when it is not an outage."""
    if isinstance(exc, Unavailable):
        return exc
    if is_connection_error(exc):
        return DatabaseUnavailable()
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return StorageUnavailable()
    if isinstance(exc, HttpResponseError) and exc.status_code is not None and exc.status_code >= 500:
        return StorageUnavailable()
    return None
