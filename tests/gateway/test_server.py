"""Starting and stopping the gateway: embedded in a loop, and as ``mediagen gateway``."""

from __future__ import annotations

import asyncio
import json
import socket

import grpc
import httpx
import pytest

from mediagen.config import Settings
from mediagen.gateway import run_gateway, start_gateway
from mediagen.gateway.app import build_gateway_app
from tests.fixtures.gateway import HANG_ID, fake_stack, running_stack


async def test_stop_ends_open_streams_with_unavailable():
    async with running_stack(fake_stack()) as stack:
        gateway = stack.gateway
        assert gateway is not None
        path = f"/api/v1/jobs/{HANG_ID}:watch"
        async with (
            httpx.AsyncClient(base_url=stack.http_url, timeout=10) as http,
            http.stream("GET", path) as response,
        ):
            lines = response.aiter_lines()
            first = json.loads(await asyncio.wait_for(anext(lines), timeout=5))
            assert first["result"]["sequence"] == "1"
            stopping = asyncio.create_task(gateway.stop())
            last = json.loads(await asyncio.wait_for(anext(lines), timeout=5))
        assert last["error"]["code"] == 14
        await asyncio.wait_for(stopping, timeout=10)
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient(base_url=stack.http_url) as http:
                await http.get("/api/v1/health")


async def test_start_on_a_busy_port_fails():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        channel = grpc.aio.insecure_channel("127.0.0.1:9")
        try:
            with pytest.raises(OSError):
                await start_gateway(build_gateway_app(channel), "127.0.0.1", port)
        finally:
            await channel.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_run_gateway(tmp_path, capsys):
    async with running_stack(fake_stack()) as stack:
        port = _free_port()
        settings = Settings(
            data_dir=tmp_path, host="127.0.0.1", http_port=port, secret_key="test-secret"
        )
        task = asyncio.create_task(run_gateway(settings, stack.grpc_target))
        for _ in range(500):
            if "gateway listening on" in capsys.readouterr().out or task.done():
                break
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            assert (await http.get("/api/v1/health")).json()["status"] == "SERVING"
            assert (await http.get("/api/v1/jobs/job-1")).status_code == 200
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                await http.get("/api/v1/health")


async def test_run_gateway_prints_its_address(tmp_path, capsys):
    port = _free_port()
    settings = Settings(
        data_dir=tmp_path, host="127.0.0.1", http_port=port, secret_key="test-secret"
    )
    task = asyncio.create_task(run_gateway(settings, "127.0.0.1:9"))
    out = ""
    for _ in range(500):
        out += capsys.readouterr().out
        if out:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert out == f"gateway listening on http://127.0.0.1:{port}\n"


def test_listening_socket_gets_tcp_nodelay_connections():
    # asyncio sets TCP_NODELAY only on sockets whose protocol is IPPROTO_TCP; without it every
    # reply waits for a delayed ACK (about 40 ms).
    from mediagen.net import listen_tcp

    sock = listen_tcp("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


async def test_replies_are_not_delayed_by_nagle():
    async with (
        running_stack(fake_stack()) as stack,
        httpx.AsyncClient(base_url=stack.http_url, timeout=10) as http,
    ):
        await http.get("/openapi.json")
        began = asyncio.get_running_loop().time()
        for _ in range(10):
            await http.get("/openapi.json")
        per_request_s = (asyncio.get_running_loop().time() - began) / 10
    assert per_request_s < 0.035  # 40 ms each with Nagle and delayed ACKs
