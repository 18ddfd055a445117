"""The server interceptor: every RPC but health (and, unless configured, reflection) runs as
an authenticated :class:`~mediagen.auth.principal.Principal`, or is refused before the servicer.

It runs each call in a scope of its own (:mod:`mediagen.api.call_scope`), because only the
behaviour receives the ``ServicerContext`` with the call's metadata and TLS peer. The
principal is set with :func:`acting_as` around the servicer, so ``current_principal()`` is the
caller inside it and everything it awaits. A refusal is a ``MediagenError`` status with
ErrorInfo, as the servicer's own errors are.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
from grpc_status import rpc_status

from mediagen.api.call_scope import Context, Handler, within
from mediagen.auth import policy
from mediagen.auth.mtls import CertificatePolicy, principal_from_certificate
from mediagen.auth.principal import Principal, acting_as
from mediagen.auth.verifier import KeyVerifier
from mediagen.errors import MediagenError, internal_status
from mediagen.logs.context import bound

log = logging.getLogger(__name__)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticate by bearer API key, else by verified client certificate (when ``certificates``
    is given), then apply :func:`policy.act_for` and :func:`policy.authorize`."""

    def __init__(
        self,
        verifier: KeyVerifier,
        *,
        certificates: CertificatePolicy | None = None,
        protect_reflection: bool = False,
    ) -> None:
        self.verifier = verifier
        self.certificates = certificates
        self.protect_reflection = protect_reflection

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not policy.needs_credentials(
            method, protect_reflection=self.protect_reflection
        ):
            return handler
        return _guarded(handler, lambda context: self._admit(method, context))

    async def principal_for(self, method: str, context: Context) -> Principal:
        """Who is calling ``method``; raises Unauthenticated or PermissionDenied."""
        metadata = context.invocation_metadata() or ()
        authorization = [str(v) for k, v in metadata if k == policy.AUTHORIZATION]
        tenant_header = [str(v) for k, v in metadata if k == policy.TENANT_HEADER]
        key = policy.bearer_key(authorization)
        principal: Principal | None = None
        if key is not None:
            principal = await self.verifier.verify(key)
        elif self.certificates is not None:
            principal = principal_from_certificate(context.auth_context(), self.certificates)
        if principal is None:
            raise policy.missing_credentials()
        principal = policy.act_for(principal, tenant_header)
        policy.authorize(principal, method)
        return principal

    async def _admit(self, method: str, context: Context) -> Principal:
        try:
            principal = await self.principal_for(method, context)
        except MediagenError as exc:  # refused, or the key store is unavailable
            log.info("auth: %s refused %s: %s", method, exc.reason, exc.message)
            await context.abort_with_status(rpc_status.to_status(exc.to_status()))
            raise AssertionError("abort_with_status returned") from exc  # pragma: no cover
        except Exception as exc:
            log.exception("auth: %s: checking credentials failed", method)
            await context.abort_with_status(rpc_status.to_status(internal_status()))
            raise AssertionError("abort_with_status returned") from exc  # pragma: no cover
        log.debug(
            "auth: %s tenant=%s role=%s via=%s key=%s",
            method,
            principal.tenant,
            principal.role.value,
            principal.via,
            principal.key_id,
        )
        return principal


def _guarded(handler: Handler, admit: Callable[[Context], Awaitable[Principal]]) -> Handler:
    """``handler`` with ``admit`` run first and the servicer run as its principal."""

    @contextlib.asynccontextmanager
    async def as_caller(context: Context) -> AsyncIterator[None]:
        principal = await admit(context)
        with acting_as(principal), bound(tenant=principal.tenant):
            yield

    return within(handler, as_caller)
