"""The gateway's request ids: the ``X-Request-Id`` header if it is a safe one, else a new one
(:mod:`mediagen.logs.request_ids`).

The id replaces the header before the app sees it, so the app forwards it to the API as
``x-request-id`` metadata (:mod:`.metadata`) and the API logs under the same id; it is the log
context of the gateway's own lines, and it comes back as an ``X-Request-Id`` response header on
every answer, errors included.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mediagen.logs import request_ids
from mediagen.logs.context import bound

_HEADER = request_ids.HEADER.encode()


class RequestIds:
    """ASGI middleware giving each HTTP request a request id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(bytes(k).lower(), bytes(v)) for k, v in scope["headers"]]
        given = [v.decode("latin-1") for k, v in headers if k == _HEADER]
        request_id = request_ids.accept(given[0] if given else None)
        value = request_id.encode()
        scope = {
            **scope,
            "headers": [*((k, v) for k, v in headers if k != _HEADER), (_HEADER, value)],
        }

        async def identified(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), (_HEADER, value)]}
            await send(message)

        with bound(request_id=request_id):
            await self.app(scope, receive, identified)
