"""Starting and stopping the emulator: in this loop, and as ``mediagen emulator`` runs it."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from mediagen.config import Settings
from mediagen.emulator import EmulatorConfig, serve_emulator_forever, start_emulator
from tests.fixtures.emulator import wait_until


async def test_start_binds_a_free_port_and_stop_is_idempotent() -> None:
    running = await start_emulator(EmulatorConfig(), port=0)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", running.base_url)
    async with httpx.AsyncClient(base_url=running.base_url) as http:
        assert (await http.get("/_emulator/health")).json() == {"status": "ok"}
    await running.stop()
    await running.stop()
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(base_url=running.base_url) as http:
            await http.get("/_emulator/health")


async def test_a_busy_port_fails_at_start() -> None:
    async with await start_emulator(EmulatorConfig()) as first:
        port = int(first.base_url.rsplit(":", 1)[1])
        with pytest.raises(OSError):
            await start_emulator(EmulatorConfig(), port=port)


async def test_serve_forever_says_where_it_listens_and_stops_when_cancelled(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = Settings(host="127.0.0.1", emulator_port=0, emulator_latency_s=0.1)
    serving = asyncio.create_task(serve_emulator_forever(settings))

    async def printed() -> str:
        return capsys.readouterr().out

    line = await wait_until(printed, lambda out: "listening" in out)
    match = re.fullmatch(r"emulator listening on (http://127\.0\.0\.1:\d+)\n", line)
    assert match is not None
    async with httpx.AsyncClient(base_url=match[1]) as http:
        assert (await http.get("/_emulator/health")).status_code == 200

    serving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await serving
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(base_url=match[1]) as http:
            await http.get("/_emulator/health")
