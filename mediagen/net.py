"""Listening sockets for the HTTP servers (the gateway and the emulator)."""

from __future__ import annotations

import socket


def listen_tcp(host: str, port: int, *, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: any free port).

    Binding here rather than in uvicorn makes a busy port an ``OSError`` at the call site and
    gives the real port at once. The protocol is ``IPPROTO_TCP`` explicitly, not 0: accepted
    sockets inherit it, and asyncio sets TCP_NODELAY only on sockets that say TCP; without it
    every response after the first waits ~40 ms (Nagle against delayed ACKs).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock
