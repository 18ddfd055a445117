"""The authenticated caller of one RPC. Pure: no I/O.

The auth interceptor sets it for the duration of a call (a context variable, so the servicer and
anything it awaits see it without threading it through every signature); the servicer scopes
every read and write to ``principal.tenant`` unless the principal is an admin.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
from collections.abc import Iterator
from dataclasses import dataclass


class Role(enum.StrEnum):
    #: Acts on its own tenant's jobs and media only.
    TENANT = "tenant"
    #: Sees and acts on every tenant's jobs (operators).
    ADMIN = "admin"
    #: Reads its own tenant's jobs and media; may not create or cancel (dashboards, auditors).
    VIEWER = "viewer"


#: The tenant of jobs made while authentication is off (embedded, loopback, no keys).
DEFAULT_TENANT = "default"


@dataclass(frozen=True)
class Principal:
    tenant: str
    role: Role = Role.TENANT
    #: How the caller proved who it is: "key", "mtls", or "none" (authentication off).
    via: str = "key"
    #: The API key's public id (never the secret), for logs.
    key_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def read_only(self) -> bool:
        return self.role is Role.VIEWER

    @property
    def tenant_scope(self) -> str | None:
        """The tenant reads are limited to; None for an admin, who sees every tenant."""
        return None if self.is_admin else self.tenant


#: The caller when authentication is switched off: everything lands in the default tenant,
#: and it may see everything (there is no one else).
ANONYMOUS = Principal(tenant=DEFAULT_TENANT, role=Role.ADMIN, via="none")

_current: contextvars.ContextVar[Principal] = contextvars.ContextVar(
    "mediagen_principal", default=ANONYMOUS
)


def current_principal() -> Principal:
    """The caller of the RPC being served (ANONYMOUS outside any authenticated call)."""
    return _current.get()


@contextlib.contextmanager
def acting_as(principal: Principal) -> Iterator[None]:
    """Make ``principal`` the current caller inside the block."""
    token = _current.set(principal)
    try:
        yield
    finally:
        _current.reset(token)
