"""Listening sockets for the servers, and the one error a taken port gives."""

from __future__ import annotations

import errno
import socket


class CannotListen(OSError):
    """A server could not bind its port: in use by another process, or not this machine's.

    The message names the server and the address, and is meant for the operator as it is."""


def cannot_listen(name: str, host: str, port: int, cause: OSError | None = None) -> CannotListen:
    """The error for ``name`` (e.g. "gRPC") failing to bind ``host:port``."""
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if cause is not None and cause.errno == errno.EADDRINUSE:
        return CannotListen(
            errno.EADDRINUSE, f"{name} port {address} is already in use (by another process?)"
        )
    reason = cause.strerror if cause is not None and cause.strerror else "bind failed"
    return CannotListen(cause.errno if cause else 0, f"cannot listen on {name} {address}: {reason}")


def listen_tcp(host: str, port: int, *, backlog: int = 2048, name: str = "HTTP") -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: any free port); :class:`CannotListen`
    naming ``name`` when the port is taken.

    Binding here rather than in uvicorn makes a busy port an error at the call site and gives
    the real port at once. SO_REUSEADDR only (a restart need not wait out TIME_WAIT), never
    SO_REUSEPORT, which would let a second server share the port and split the calls. The
    protocol is ``IPPROTO_TCP`` explicitly, not 0: accepted sockets inherit it, and asyncio sets
    TCP_NODELAY only on sockets that say TCP; without it every response after the first waits
    ~40 ms (Nagle against delayed ACKs).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise cannot_listen(name, host, port, exc) from exc
    return sock


def port_in_use(host: str, port: int) -> OSError | None:
    """Why ``host:port`` cannot be bound right now (None: it can); used to explain a failure
    reported without a reason (gRPC's)."""
    try:
        listen_tcp(host, port, backlog=1).close()
    except CannotListen as exc:
        cause = exc.__cause__
        return cause if isinstance(cause, OSError) else exc
    return None
