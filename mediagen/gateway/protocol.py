"""uvicorn's h11 protocol with the limits it lacks: read deadlines and a connection cap.

What uvicorn (h11) bounds by itself: the bytes it buffers while a request head is incomplete
(``h11_max_incomplete_event_size``, set to the header limit; a complete head of any size still
passes, which :func:`mediagen.gateway.limits.check_head` catches) and the idle time *after* a
response (``timeout_keep_alive``). What it does not, and this class adds:

- **a connection that never sends a request** stays open forever: the keep-alive timer now
  starts when the connection is made;
- **a slow request head** (slowloris: a byte every few seconds) re-arms nothing and holds the
  connection forever: the head must arrive within ``header_timeout_s`` of its first byte
  (408, then close);
- **a slow body** likewise: the gateway answers 408 at ``body_timeout_s``; this closes the
  connection one second later whatever the application did (a route that never reads its body);
- **open connections** are unbounded (``limit_concurrency`` answers 503 per *request* but
  accepts every connection): past ``max_connections`` a new connection gets 503 and is closed.

A header too large for h11's buffer is answered 431 rather than uvicorn's plain 400.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, cast

import grpc
import h11
from google.rpc import status_pb2
from uvicorn.protocols.http.h11_impl import H11Protocol

from mediagen.config import HttpSettings
from mediagen.gateway import errors, jsonmap

#: The body deadline of the protocol trails the application's by this much, so the
#: application's 408 goes out first when it reads the body.
BODY_DEADLINE_MARGIN_S = 1.0

_REASONS = {408: "Request Timeout", 431: "Request Header Fields Too Large", 503: "Unavailable"}


def raw_error(http_status: int, code: grpc.StatusCode, message: str) -> bytes:
    """A complete ``Connection: close`` HTTP/1.1 error response with a Status JSON body,
    for answers written before (or instead of) a request the application sees."""
    status = status_pb2.Status(code=code.value[0], message=message)
    body = jsonmap.dumps(errors.status_to_obj(status))
    head = (
        f"HTTP/1.1 {http_status} {_REASONS[http_status]}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class LimitedH11Protocol(H11Protocol):
    """The h11 protocol under :class:`HttpSettings`; see the module docstring."""

    settings: ClassVar[HttpSettings] = HttpSettings()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout_keep_alive = self.settings.keepalive_s  # type: ignore[assignment]
        self._phase: str | None = None
        self._deadline: asyncio.TimerHandle | None = None

    @classmethod
    def under(cls, settings: HttpSettings) -> type[LimitedH11Protocol]:
        """This protocol bound to ``settings`` (uvicorn builds protocols from a class)."""
        return cast("type[LimitedH11Protocol]", type(cls.__name__, (cls,), {"settings": settings}))

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.settings.max_connections:
            self.transport = transport
            transport.write(
                raw_error(503, grpc.StatusCode.UNAVAILABLE, "too many open connections")
            )
            transport.close()
            return
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._set_phase(None)
        if self.flow is None:  # refused in connection_made: nothing was set up
            return
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._track()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._track()

    def send_400_response(self, msg: str) -> None:
        if len(self.conn.trailing_data[0]) > self.settings.max_header_bytes:
            limit = self.settings.max_header_bytes
            message = f"request line and headers exceed {limit} bytes"
            self._refuse(raw_error(431, grpc.StatusCode.INVALID_ARGUMENT, message))
            return
        super().send_400_response(msg)

    def _track(self) -> None:
        """Arm the deadline of the part of a request now being received, if any."""
        if self.transport.is_closing():
            return self._set_phase(None)
        state = self.conn.their_state
        if state is h11.IDLE and self.conn.trailing_data[0]:
            self._set_phase("head")
        elif state is h11.SEND_BODY:
            self._set_phase("body")
        else:
            self._set_phase(None)

    def _set_phase(self, phase: str | None) -> None:
        if phase == self._phase:
            return
        self._phase = phase
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if phase == "head":
            self._deadline = self.loop.call_later(self.settings.header_timeout_s, self._head_late)
        elif phase == "body":
            delay = self.settings.body_timeout_s + BODY_DEADLINE_MARGIN_S
            self._deadline = self.loop.call_later(delay, self.transport.close)

    def _head_late(self) -> None:
        limit = self.settings.header_timeout_s
        message = f"request line and headers not received within {limit:g}s"
        self._refuse(raw_error(408, grpc.StatusCode.DEADLINE_EXCEEDED, message))

    def _refuse(self, response: bytes) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.write(response)
            self.transport.close()
