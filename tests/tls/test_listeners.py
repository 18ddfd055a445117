"""TLS and mTLS on both listeners, in-process: the embedded service with TLS on, reached over
real loopback gRPC channels and real HTTPS, by MediagenClient, raw channels and httpx."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mediagen.api.server import start_grpc_server
from mediagen.api.servicer import Context, MediaGenerationServicer
from mediagen.client import MediagenClient, RetryPolicy, UnavailableError
from mediagen.config import Settings, TLSSettings
from mediagen.embedded import Embedded
from mediagen.gateway import run_gateway
from mediagen.jobs.migrate import upgrade
from mediagen.tls import ClientTLS
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from mediagen.wiring import open_core
from tests.fixtures.embedded import embedded_settings
from tests.fixtures.processes import free_port
from tests.fixtures.tls import CLIENT_COMMON_NAME, TLSFiles


@contextlib.asynccontextmanager
async def _service(data_dir: Path, tls: TLSSettings) -> AsyncIterator[Embedded]:
    app = Embedded(embedded_settings(data_dir, tls=tls))
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


@pytest.fixture
async def tls_service(tmp_path: Path, tls_files: TLSFiles) -> AsyncIterator[Embedded]:
    async with _service(tmp_path / "data", tls_files.server()) as app:
        yield app


@pytest.fixture
async def mtls_service(tmp_path: Path, tls_files: TLSFiles) -> AsyncIterator[Embedded]:
    async with _service(tmp_path / "data", tls_files.server(mutual=True)) as app:
        yield app


async def _health(channel: grpc.aio.Channel) -> grpc.StatusCode:
    try:
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    finally:
        await channel.close()
    return grpc.StatusCode.OK


async def _http_health(url: str, verify: ssl.SSLContext | bool) -> int:
    async with httpx.AsyncClient(verify=verify, timeout=5) as http:
        return (await http.get(f"{url}/api/v1/health")).status_code


async def _generate_and_download(client: MediagenClient, out: Path) -> tuple[job_pb2.Job, Path]:
    job = await client.generate("a red fox", parameters={"width": 64, "height": 64})
    events = [event async for event in client.watch(job.id)]
    done = events[-1].job
    assert done.status == job_pb2.JOB_STATE_SUCCEEDED, done.error
    (media,) = done.media
    return done, await client.download(media, out)


# -- TLS


async def test_client_generates_watches_and_downloads_over_tls(tls_service, tls_files, tmp_path):
    assert tls_service.http_url.startswith("https://127.0.0.1:")
    async with MediagenClient(
        tls_service.grpc_target, tls=True, ca=tls_files.ca, http_base_url=tls_service.http_url
    ) as client:
        job, path = await _generate_and_download(client, tmp_path / "out")

    (media,) = job.media
    assert media.url.startswith(f"{tls_service.http_url}/files/")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == media.sha256
    assert path.read_bytes().startswith(b"\x89PNG")


async def test_plaintext_is_refused_on_both_listeners(tls_service, tls_files):
    target, https_url = tls_service.grpc_target, tls_service.http_url

    assert await _health(grpc.aio.insecure_channel(target)) == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(httpx.TransportError):
        await _http_health(https_url.replace("https://", "http://"), verify=True)
    # The same listeners answer TLS.
    secure = grpc.aio.secure_channel(target, tls_files.channel_credentials(cert=False))
    assert await _health(secure) == grpc.StatusCode.OK
    assert await _http_health(https_url, tls_files.client(cert=False).ssl_context()) == 200


async def test_the_client_refuses_a_server_its_ca_did_not_sign(tls_service, tls_files):
    for ca in (tls_files.other_ca, None):  # another CA; gRPC's own roots
        async with MediagenClient(
            tls_service.grpc_target, tls=True, ca=ca, timeout_s=5, retry=RetryPolicy(attempts=1)
        ) as client:
            with pytest.raises(UnavailableError):
                await client.get("no-such-job")
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        await _http_health(tls_service.http_url, ClientTLS(ca=tls_files.other_ca).ssl_context())


# -- mTLS


async def test_mtls_grpc_refuses_no_certificate_and_a_strangers(mtls_service, tls_files):
    target = mtls_service.grpc_target
    without = grpc.aio.secure_channel(target, tls_files.channel_credentials(cert=False))
    stranger = grpc.aio.secure_channel(target, tls_files.stranger().grpc_credentials())
    valid = grpc.aio.secure_channel(target, tls_files.channel_credentials())

    assert await _health(without) == grpc.StatusCode.UNAVAILABLE
    assert await _health(stranger) == grpc.StatusCode.UNAVAILABLE
    assert await _health(valid) == grpc.StatusCode.OK


async def test_mtls_gateway_refuses_no_certificate_and_a_strangers(mtls_service, tls_files):
    url = mtls_service.http_url
    with pytest.raises(httpx.TransportError):
        await _http_health(url, tls_files.client(cert=False).ssl_context())
    with pytest.raises(httpx.TransportError):
        await _http_health(url, tls_files.stranger().ssl_context())
    assert await _http_health(url, tls_files.client().ssl_context()) == 200


async def test_mtls_client_with_its_certificate_generates_and_downloads(
    mtls_service, tls_files, tmp_path
):
    # The download goes through the gateway, which requires the client certificate too.
    async with MediagenClient(
        mtls_service.grpc_target,
        ca=tls_files.ca,
        cert=tls_files.client_cert,
        key=tls_files.client_key,
        http_base_url=mtls_service.http_url,
    ) as client:
        job, path = await _generate_and_download(client, tmp_path / "out")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == job.media[0].sha256


class _RecordingServicer(MediaGenerationServicer):
    """The real servicer, noting what gRPC says about each caller's transport."""

    seen: list[dict[str, list[bytes]]]

    async def GetJob(self, request: pb.GetJobRequest, context: Context) -> pb.GetJobResponse:
        self.seen.append({k: list(v) for k, v in context.auth_context().items()})
        return await super().GetJob(request, context)


async def test_mtls_puts_the_verified_certificate_in_the_auth_context(tls_files, tmp_path):
    settings = Settings(data_dir=tmp_path, host="127.0.0.1", grpc_port=0)
    await upgrade(settings.effective_database_url)
    async with open_core(settings, worker=False) as core:
        servicer = _RecordingServicer(
            core.settings, core.store, core.bus, core.storage, core.enqueue
        )
        servicer.seen = []
        server = await start_grpc_server(
            "127.0.0.1", 0, servicer=servicer, tls=tls_files.server(mutual=True)
        )
        try:
            target = f"127.0.0.1:{server.port}"
            async with grpc.aio.secure_channel(target, tls_files.channel_credentials()) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await pb_grpc.MediaGenerationServiceStub(channel).GetJob(
                        pb.GetJobRequest(id="no-such-job"), timeout=5
                    )
        finally:
            await server.stop(1, servicer)

    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    (auth,) = servicer.seen
    assert auth["transport_security_type"] == [b"ssl"]
    assert auth["x509_common_name"] == [CLIENT_COMMON_NAME.encode()]
    assert auth["x509_subject_alternative_name"] == [b"tenant-a.clients.test"]
    assert auth["x509_pem_cert"][0] == tls_files.client_cert.read_bytes()


# -- the gateway as a client of a TLS API


async def _run_gateway(settings: Settings, target: str, upstream: ClientTLS, capsys):
    task = asyncio.create_task(run_gateway(settings, target, upstream_tls=upstream))
    for _ in range(500):
        if "gateway listening on" in capsys.readouterr().out or task.done():
            break
        await asyncio.sleep(0.01)
    if task.done():
        await task  # raises why it stopped
    return task


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_mediagen_gateway_reaches_an_mtls_api(mtls_service, tls_files, tmp_path, capsys):
    port = free_port()
    settings = Settings(
        data_dir=tmp_path / "gw",
        host="127.0.0.1",
        http_port=port,
        tls=tls_files.server(),
        secret_key=mtls_service.settings.secret_key,
    )
    task = await _run_gateway(settings, mtls_service.grpc_target, tls_files.client(), capsys)
    try:
        async with httpx.AsyncClient(
            base_url=f"https://127.0.0.1:{port}", verify=tls_files.client().ssl_context()
        ) as http:
            health = (await http.get("/api/v1/health")).json()
            assert health["status"] == "SERVING"
            assert {c["name"] for c in health["components"]} >= {"api", "database"}
            created = await http.post("/api/v1/jobs/generate", json={"prompt": "a red fox"})
            assert created.status_code == 200, created.text
            job_id = created.json()["id"]
            status = await http.get(f"/api/v1/jobs/status/{job_id}")
            assert status.status_code == 200
            assert status.json()["id"] == job_id
    finally:
        await _stop(task)


async def test_a_gateway_without_a_client_certificate_cannot_reach_an_mtls_api(
    mtls_service, tls_files, tmp_path, capsys
):
    port = free_port()
    settings = Settings(
        data_dir=tmp_path / "gw", host="127.0.0.1", http_port=port, secret_key="test-secret"
    )
    task = await _run_gateway(
        settings, mtls_service.grpc_target, tls_files.client(cert=False), capsys
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            health = await http.get("/api/v1/health")
            job = await http.get("/api/v1/jobs/status/some-job")
        assert health.status_code == 503
        assert job.status_code == 503
        assert job.json()["code"] == grpc.StatusCode.UNAVAILABLE.value[0]
    finally:
        await _stop(task)
