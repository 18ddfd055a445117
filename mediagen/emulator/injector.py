"""ASGI middleware that counts calls per route and applies armed request faults to them.

It sits outside authentication and routing, as a proxy or load balancer would: an injected 503
or a dropped connection happens whatever the request holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mediagen.emulator.faults import Delay, Drop, RequestFault, Route, ServerError, Throttle
from mediagen.emulator.problems import server_error, throttled
from mediagen.emulator.state import Emulator

#: Closes the client's TCP connection for ``scope`` at once; False if it cannot.
ConnectionAborter = Callable[[Scope], bool]

_ROUTES: list[tuple[frozenset[str], re.Pattern[str], Route]] = [
    (frozenset({"POST"}), re.compile(r"/v1/predictions/?"), Route.CREATE),
    (
        frozenset({"POST"}),
        re.compile(r"/v1/(?:models|deployments)/[^/]+/[^/]+/predictions/?"),
        Route.CREATE,
    ),
    (frozenset({"GET"}), re.compile(r"/v1/predictions/?"), Route.LIST),
    (frozenset({"GET"}), re.compile(r"/v1/predictions/(?P<id>[^/]+)/?"), Route.GET),
    (frozenset({"POST"}), re.compile(r"/v1/predictions/(?P<id>[^/]+)/cancel/?"), Route.CANCEL),
    (frozenset({"GET"}), re.compile(r"/v1/webhooks/default/secret/?"), Route.SECRET),
    (frozenset({"GET", "HEAD"}), re.compile(r"/files/(?P<id>[^/]+)/[^/]+"), Route.FILE),
]


class DropUnsupported(RuntimeError):
    """A ``Drop`` fault fired but the server gave no way to close connections."""


def classify(method: str, path: str) -> tuple[Route, str | None] | None:
    """The route of a call and the prediction id in its path, or None if not a faultable call."""
    for methods, pattern, route in _ROUTES:
        if method in methods and (match := pattern.fullmatch(path)):
            return route, match.groupdict().get("id")
    return None


class FaultInjector:
    def __init__(
        self, app: ASGIApp, emulator: Emulator, abort: ConnectionAborter | None = None
    ) -> None:
        self.app = app
        self.emulator = emulator
        self.abort = abort

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = classify(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if found is None:
            await self.app(scope, receive, send)
            return
        route, prediction_id = found
        plan = self.emulator.faults
        self.emulator.stats.requests[route] += 1
        subject = None
        if plan.needs_subject(route):
            if route is Route.CREATE:
                subject, receive = await _prompt_of_body(receive)
            elif prediction_id is not None:
                subject = self.emulator.prompt_of(prediction_id)
        before = plan.take(route, subject, after=False)
        if isinstance(before, Delay):
            # The request has arrived; only its handling is slow. Read it now, so it is still
            # handled (a late create still happens) if the client gives up meanwhile.
            _, receive = await _read_body(receive)
        if before is not None and not await self._apply(before, scope, receive, send):
            return
        after = plan.take(route, subject, after=True)
        if after is None:
            await self.app(scope, receive, send)
            return
        answer = _Recorder()
        await self.app(scope, receive, answer.send)
        if await self._apply(after, scope, receive, send):
            await answer.replay(send)

    async def _apply(self, fault: RequestFault, scope: Scope, receive: Receive, send: Send) -> bool:
        """Apply ``fault``; True if the call should go on (a delay), False if it was answered."""
        self.emulator.stats.faults_applied += 1
        if isinstance(fault, Delay):
            await asyncio.sleep(fault.delay_s)
            return True
        if isinstance(fault, ServerError):
            await server_error(fault.status).response()(scope, receive, send)
        elif isinstance(fault, Throttle):
            await throttled(fault.retry_after_s, header=fault.header).response()(
                scope, receive, send
            )
        elif isinstance(fault, Drop):
            await self._drop(scope, receive)
        return False

    async def _drop(self, scope: Scope, receive: Receive) -> None:
        if self.abort is None or not self.abort(scope):
            raise DropUnsupported("cannot close this connection; serve with start_emulator()")
        # Wait until the server has seen the connection go, so it sends nothing (not even the
        # 500 it answers an app that returns without a response) on the dead socket.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                while (await receive())["type"] != "http.disconnect":
                    pass


class _Recorder:
    """Holds a response back so an ``after`` fault can replace, delay or drop it."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def send(self, message: Message) -> None:
        self.messages.append(message)

    async def replay(self, send: Send) -> None:
        for message in self.messages:
            await send(message)


async def _prompt_of_body(receive: Receive) -> tuple[str | None, Receive]:
    """The create body's ``input.prompt``, and a ``receive`` that replays the body read."""
    body, replay = await _read_body(receive)
    try:
        data = json.loads(body)
        prompt = data["input"]["prompt"]
    except (ValueError, KeyError, TypeError):
        return None, replay
    return (prompt if isinstance(prompt, str) else None), replay


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    """The whole request body, and a ``receive`` that replays it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay
