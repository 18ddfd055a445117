"""Who needs credentials, what a role may do, and the headers that say who calls. Pure.

- ``grpc.health.v1.Health`` is always open (probes, load balancers); reflection is open unless
  configured otherwise (it shows the contract, no data).
- ``authorization: Bearer <key>`` carries an API key. Any other scheme, or a value that is not
  shaped like a key, is UNAUTHENTICATED.
- ``viewer`` keys may read (GetJob, ListJobs, WatchJob, GetMedia) but not GenerateMedia or
  CancelJob: PERMISSION_DENIED.
- ``x-mediagen-tenant: T`` lets an admin act for tenant T (its calls are then scoped to T as a
  tenant key's are); a non-admin naming any tenant but its own gets PERMISSION_DENIED.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Final

from mediagen.auth.keys import TENANT, ApiKey, MalformedKey, parse_key
from mediagen.auth.principal import Principal, Role
from mediagen.errors import (
    CredentialsMissing,
    InvalidApiKey,
    ReadOnlyRole,
    TenantOverrideDenied,
)
from mediagen.v1 import media_generation_service_pb2 as pb

AUTHORIZATION: Final = "authorization"
TENANT_HEADER: Final = "x-mediagen-tenant"

_SERVICE: Final = pb.DESCRIPTOR.services_by_name["MediaGenerationService"].full_name
#: Methods that change state; read-only roles may not call them.
WRITE_METHODS: Final = frozenset({f"/{_SERVICE}/GenerateMedia", f"/{_SERVICE}/CancelJob"})
_OPEN_SERVICES: Final = ("grpc.health.v1.Health",)
_REFLECTION_SERVICES: Final = (
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)


def _service_of(method: str) -> str:
    """``/pkg.Service/Method`` -> ``pkg.Service``."""
    return method.lstrip("/").split("/", 1)[0]


def needs_credentials(method: str, *, protect_reflection: bool) -> bool:
    service = _service_of(method)
    if service in _OPEN_SERVICES:
        return False
    return not (service in _REFLECTION_SERVICES and not protect_reflection)


def bearer_key(values: Sequence[str]) -> ApiKey | None:
    """The API key of the ``authorization`` values; None when there is none at all."""
    if not values:
        return None
    if len(values) > 1:
        raise InvalidApiKey("send one authorization header, not several")
    scheme, _, credentials = values[0].strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise InvalidApiKey("authorization must be 'Bearer <API key>'")
    try:
        return parse_key(credentials)
    except MalformedKey as exc:
        raise InvalidApiKey(f"invalid API key: {exc}") from exc


def missing_credentials() -> CredentialsMissing:
    return CredentialsMissing(
        "this call needs an API key: send 'authorization: Bearer <key>' "
        "(create one with `mediagen keys create --tenant NAME`)"
    )


def act_for(principal: Principal, values: Sequence[str]) -> Principal:
    """The principal after an ``x-mediagen-tenant`` header (``values``), if any."""
    if not values:
        return principal
    requested = values[-1].strip()
    if requested == principal.tenant and not principal.is_admin:
        return principal
    if not principal.is_admin:
        raise TenantOverrideDenied(
            f"only admin keys may act for another tenant ({TENANT_HEADER})",
            metadata={"tenant": principal.tenant},
        )
    if not TENANT.fullmatch(requested):
        raise TenantOverrideDenied(f"{TENANT_HEADER} is not a valid tenant name")
    return dataclasses.replace(principal, tenant=requested, role=Role.TENANT)


def authorize(principal: Principal, method: str) -> None:
    """PERMISSION_DENIED when the principal's role may not call ``method``."""
    if principal.read_only and method in WRITE_METHODS:
        name = method.rsplit("/", 1)[-1]
        raise ReadOnlyRole(
            f"role {principal.role.value} is read-only and may not call {name}",
            metadata={"role": principal.role.value, "method": name},
        )
