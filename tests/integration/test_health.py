"""Health tells the truth about dependencies, with real ones: a private PostgreSQL and a
private redis-server stopped and started again under a running service, and the embedded
service's storage directory replaced by a file. Readiness ("" and the service's name) turns
NOT_SERVING and back, seen on a grpc.health.v1 Watch stream and on ``/api/v1/health``; liveness
(``grpc.health.v1.Health``) stays SERVING throughout."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mediagen.embedded import Embedded
from mediagen.jobs.migrate import upgrade
from mediagen.wiring import open_core, open_health
from mediagen.worker.service import WorkerService
from tests.fixtures.embedded import embedded_settings
from tests.fixtures.private_postgres import PrivatePostgres
from tests.fixtures.redis_server import PrivateRedis

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE = "mediagen.v1.MediaGenerationService"
LIVENESS = "grpc.health.v1.Health"
#: Probes every 0.1 s, down after two failures: a flip is due well within this.
FLIP_S = 10.0
FAST = {"health_interval_s": 0.1, "health_timeout_s": 0.5}


class Watched:
    """The statuses one Watch stream has sent, in order."""

    def __init__(self, stub: health_pb2_grpc.HealthStub, service: str) -> None:
        self.statuses: list[int] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._watch(stub, service))

    async def _watch(self, stub: health_pb2_grpc.HealthStub, service: str) -> None:
        async for reply in stub.Watch(health_pb2.HealthCheckRequest(service=service)):
            self.statuses.append(reply.status)
            self._changed.set()

    async def until(self, status: int) -> None:
        async with asyncio.timeout(FLIP_S):
            while not self.statuses or self.statuses[-1] != status:
                self._changed.clear()
                await self._changed.wait()

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@contextlib.asynccontextmanager
async def watching(target: str, *services: str) -> AsyncIterator[list[Watched]]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        watched = [Watched(stub, service) for service in services]
        try:
            yield watched
        finally:
            for w in watched:
                await w.close()


async def check(target: str, service: str) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
    return int(reply.status)


async def http_health(app: Embedded) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{app.http_url}/api/v1/health")
    return response.status_code, response.json()


def by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in body["components"]}


async def assert_ready(app: Embedded, components: set[str]) -> None:
    code, body = await http_health(app)
    assert (code, body["status"]) == (200, "SERVING"), body
    assert set(by_name(body)) == {"api", *components}
    for component in body["components"]:
        assert component["status"] == "SERVING" and component["latency_ms"] >= 0, body
        assert "error" not in component


async def assert_down(app: Embedded, component: str) -> None:
    code, body = await http_health(app)
    assert (code, body["status"]) == (503, "NOT_SERVING"), body
    down = {name for name, c in by_name(body).items() if c["status"] == "NOT_SERVING"}
    assert down == {component}, body
    assert by_name(body)[component]["error"], body


async def test_readiness_follows_postgres_and_redis(
    private_postgres: PrivatePostgres, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    await upgrade(private_postgres.url)
    settings = embedded_settings(
        tmp_path / "data",
        database_url=private_postgres.url,
        redis_url=private_redis.url,
        queue_name=f"mediagen-health-{private_redis.port}",
        **FAST,
    )
    app = Embedded(settings)
    await app.start()
    try:
        async with watching(app.grpc_target, "", SERVICE) as (overall, service):
            await overall.until(SERVING)
            await assert_ready(app, {"database", "redis", "storage"})

            for component, stop, start in [
                ("database", private_postgres.stop, private_postgres.start),
                ("redis", private_redis.stop, private_redis.start),
            ]:
                await asyncio.to_thread(stop)
                await overall.until(NOT_SERVING)
                await service.until(NOT_SERVING)
                await assert_down(app, component)
                assert await check(app.grpc_target, LIVENESS) == SERVING
                await asyncio.to_thread(start)
                await overall.until(SERVING)
                await service.until(SERVING)
                await assert_ready(app, {"database", "redis", "storage"})
    finally:
        await app.stop()


async def test_embedded_storage_replaced_by_a_file(tmp_path: Path) -> None:
    """Root ignores file modes, so the media directory is swapped for a plain file instead."""
    app = Embedded(embedded_settings(tmp_path / "data", **FAST))
    await app.start()
    try:
        media = app.settings.media_dir
        async with watching(app.grpc_target, "") as (overall,):
            await overall.until(SERVING)
            await assert_ready(app, {"database", "storage"})
            aside = media.with_name("media-aside")
            media.rename(aside)
            media.write_bytes(b"not a directory")
            await overall.until(NOT_SERVING)
            await assert_down(app, "storage")
            assert await check(app.grpc_target, LIVENESS) == SERVING
            media.unlink()
            aside.rename(media)
            await overall.until(SERVING)
            await assert_ready(app, {"database", "storage"})
    finally:
        await app.stop()


async def test_a_workers_health_port_follows_its_dependencies(tmp_path: Path) -> None:
    """The worker's own port (``mediagen worker``'s wiring): "" is readiness, the health
    service itself liveness."""
    settings = embedded_settings(tmp_path / "data", **FAST)
    settings.data_dir.mkdir(parents=True)
    await upgrade(settings.effective_database_url)
    async with open_core(settings, worker=True) as core, open_health(core) as checker:
        worker = WorkerService(core, health_port=0, checker=checker)
        await worker.start()
        try:
            assert worker.health_port is not None
            target = f"127.0.0.1:{worker.health_port}"
            async with watching(target, "") as (overall,):
                await overall.until(SERVING)
                shutil.rmtree(settings.media_dir)
                settings.media_dir.write_bytes(b"")
                await overall.until(NOT_SERVING)
                assert await check(target, LIVENESS) == SERVING
                settings.media_dir.unlink()
                settings.media_dir.mkdir()
                await overall.until(SERVING)
        finally:
            await worker.stop()
