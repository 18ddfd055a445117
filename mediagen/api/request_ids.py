"""The server interceptor that gives every call a request id.

The id is the caller's ``x-request-id`` metadata when it is a safe one
(:mod:`mediagen.logs.request_ids`), else a new one. It is sent back in the initial metadata
before the servicer runs, so the caller gets it with an error too, and it is the log context's
``request_id`` for the whole call: every line the call logs, here and in whatever it awaits,
carries it, and a job it submits keeps it for the worker. It runs first, before
authentication, so a refused call has an id as well.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc

from mediagen.api.call_scope import Context, Handler, within
from mediagen.logs import request_ids
from mediagen.logs.context import bound


class RequestIds(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        return None if handler is None else within(handler, _identified)


@contextlib.asynccontextmanager
async def _identified(context: Context) -> AsyncIterator[None]:
    given = [str(v) for k, v in context.invocation_metadata() or () if k == request_ids.HEADER]
    request_id = request_ids.accept(given[0] if given else None)
    await context.send_initial_metadata(((request_ids.HEADER, request_id),))
    with bound(request_id=request_id):
        yield
