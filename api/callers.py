"""Who is calling: the owner that scopes every job query, the roles, and the actor for the audit log."""
from __future__ import annotations

from dataclasses import dataclass

import azure.functions as func

from shared.models import ANONYMOUS_OWNER, Owner

SUBMIT = "Jobs.Submit"
READ = "Jobs.Read"
ADMIN = "Jobs.Admin"


@dataclass(frozen=True)
class Caller:
    """An authenticated principal and its app roles."""

    owner: Owner
    roles: frozenset[str]

    @property
    def actor(self) -> str:
        return self.owner.actor

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles

    @property
    def scope(self) -> Owner | None:
        """The owner to scope queries by; None lets an admin see every job."""
        return None if self.is_admin else self.owner


def authorize(req: func.HttpRequest, role: str) -> Caller:
    """The caller if it holds `role`. Until Entra ID auth lands (issue #4) everyone is the anonymous owner."""
    return Caller(ANONYMOUS_OWNER, frozenset({SUBMIT, READ}))
