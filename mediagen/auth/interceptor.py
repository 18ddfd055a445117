"""The server interceptor: every RPC but health (and, unless configured, reflection) runs as
an authenticated :class:`~mediagen.auth.principal.Principal`, or is refused before the servicer.

It wraps each method handler's behaviour rather than deciding in ``intercept_service``, because
only the behaviour receives the ``ServicerContext`` with the call's metadata and TLS peer. The
principal is set with :func:`acting_as` around the servicer, so ``current_principal()`` is the
caller inside it and everything it awaits. A refusal is a ``MediagenError`` status with
ErrorInfo, as the servicer's own errors are.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from grpc_status import rpc_status

from mediagen.auth import policy
from mediagen.auth.mtls import CertificatePolicy, principal_from_certificate
from mediagen.auth.principal import Principal, acting_as
from mediagen.auth.verifier import KeyVerifier
from mediagen.errors import MediagenError

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # generic only in the stubs


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
        except MediagenError as exc:
            log.info("auth: %s refused %s: %s", method, exc.reason, exc.message)
            await context.abort_with_status(rpc_status.to_status(exc.to_status()))
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
    options: dict[str, Any] = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        unary: Any = handler.unary_unary  # grpc's stubs type behaviours for sync contexts

        async def unary_unary(request: Any, context: Context) -> Any:
            with acting_as(await admit(context)):
                return await unary(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, **options)
    if handler.stream_unary is not None:
        client_stream: Any = handler.stream_unary  # grpc's stubs type behaviours for sync contexts

        async def stream_unary(requests: Any, context: Context) -> Any:
            with acting_as(await admit(context)):
                return await client_stream(requests, context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, **options)
    if handler.unary_stream is not None:
        server_stream: Any = handler.unary_stream  # grpc's stubs type behaviours for sync contexts

        async def unary_stream(request: Any, context: Context) -> AsyncIterator[Any]:
            with acting_as(await admit(context)):
                async for message in _responses(server_stream(request, context)):
                    yield message

        return grpc.unary_stream_rpc_method_handler(unary_stream, **options)
    bidi: Any = handler.stream_stream  # grpc's stubs type behaviours for sync contexts

    async def stream_stream(requests: Any, context: Context) -> AsyncIterator[Any]:
        with acting_as(await admit(context)):
            async for message in _responses(bidi(requests, context)):
                yield message

    return grpc.stream_stream_rpc_method_handler(stream_stream, **options)


async def _responses(result: Any) -> AsyncIterator[Any]:
    """The messages of a streaming behaviour: an async generator's, or none from one that writes
    with ``context.write`` and returns."""
    if hasattr(result, "__aiter__"):
        async for message in result:
            yield message
    else:
        await result
