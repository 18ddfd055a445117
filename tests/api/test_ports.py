"""A taken port fails at start, naming the server and the address (issue 8, part 2): gRPC's
default SO_REUSEPORT would otherwise let a second server bind beside the first."""

from __future__ import annotations

import re
import socket

import pytest

from mediagen.api.server import start_grpc_server
from mediagen.emulator import EmulatorConfig, start_emulator
from mediagen.net import CannotListen


async def test_a_second_grpc_server_on_the_same_port_fails() -> None:
    first = await start_grpc_server("127.0.0.1", 0, servicer=None)
    try:
        with pytest.raises(CannotListen) as refused:
            await start_grpc_server("127.0.0.1", first.port, servicer=None)
        assert refused.value.strerror == (
            f"gRPC port 127.0.0.1:{first.port} is already in use (by another process?)"
        )
    finally:
        await first.server.stop(0)


async def test_a_grpc_server_does_not_share_a_port_held_by_another_program() -> None:
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as gRPC's own default
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        taken = re.escape(f"gRPC port 127.0.0.1:{port} is already in use")
        with pytest.raises(CannotListen, match=taken):
            await start_grpc_server("127.0.0.1", port, servicer=None)


async def test_http_servers_name_their_port() -> None:
    async with await start_emulator(EmulatorConfig()) as first:
        port = int(first.base_url.rsplit(":", 1)[1])
        taken = re.escape(f"emulator port 127.0.0.1:{port} is already in use")
        with pytest.raises(CannotListen, match=taken):
            await start_emulator(EmulatorConfig(), port=port)
