"""Who is calling: the owner that scopes every job query, the permissions, and the actor for the audit log."""
from __future__ import annotations

from dataclasses import dataclass

import azure.functions as func

from shared.adapters.auth import (
    ADMIN,
    READ,
    SUBMIT,
    InsufficientRoleError,
    Principal,
    bearer_token,
    get_token_validator,
)
from shared.domain.models import Owner

__all__ = ["ADMIN", "READ", "SUBMIT", "Caller", "authorize"]


@dataclass(frozen=True)
class Caller:
    """An authenticated principal and the owner its jobs belong to."""

    owner: Owner
    principal: Principal

    @property
    def actor(self) -> str:
        return self.owner.actor

    @property
    def is_admin(self) -> bool:
        """Admin from the Jobs.Admin app role only (and, delegated, its client's Jobs.Admin scope)."""
        return self.principal.holds(ADMIN)

    @property
    def scope(self) -> Owner | None:
        """The owner to scope queries by; None lets an admin see every job."""
        return None if self.is_admin else self.owner


def authorize(req: func.HttpRequest, role: str) -> Caller:
    """The caller behind the request's bearer token if it holds `role` (see `Principal.holds`).

    401 without a valid token, 403 with a valid token but without the role.
    """
    principal = get_token_validator().validate(bearer_token(req.headers.get("Authorization")))
    if not principal.holds(role):
        raise InsufficientRoleError(role)
    return Caller(Owner(tenant_id=principal.tenant_id, object_id=principal.object_id), principal)
