"""Who is calling: the owner that scopes every job query, and the actor written to the audit log."""
from __future__ import annotations

import azure.functions as func

from shared.models import ANONYMOUS_OWNER, Owner


def caller(req: func.HttpRequest) -> Owner:
    """The authenticated caller. Every job belongs to the anonymous owner until Entra ID auth lands (issue #4)."""
    return ANONYMOUS_OWNER
