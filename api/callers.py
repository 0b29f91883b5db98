"""Who is calling: the owner that scopes every job query, the roles, and the actor for the audit log."""
from __future__ import annotations

from dataclasses import dataclass

import azure.functions as func

from shared.auth import ADMIN, READ, SUBMIT, InsufficientRoleError, bearer_token, get_token_validator, holds
from shared.models import Owner

__all__ = ["ADMIN", "READ", "SUBMIT", "Caller", "authorize"]


@dataclass(frozen=True)
class Caller:
    """An authenticated principal and its app roles (and delegated scopes)."""

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
    """The caller behind the request's bearer token if it holds `role` (Jobs.Admin holds every role).

    401 without a valid token, 403 with a valid token but without the role.
    """
    principal = get_token_validator().validate(bearer_token(req.headers.get("Authorization")))
    caller = Caller(Owner(tenant_id=principal.tenant_id, object_id=principal.object_id), principal.permissions)
    if not holds(caller.roles, role):
        raise InsufficientRoleError(role)
    return caller
