"""Tenants end to end: the embedded service with real API keys, called over a real gRPC channel,
over HTTP through the gateway, and through the signed media URLs it hands out.

Keys (tests/auth/conftest.py): ``acme`` and ``globex`` are tenants, ``admin`` sees everything.
Another tenant's job or media is NOT_FOUND exactly like an id that does not exist; a media URL
is a download only while its signature is intact and unexpired.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import grpc
import httpx
import pytest
from grpc_status import rpc_status

from mediagen.client import MediagenClient
from mediagen.client.errors import NotFoundError
from mediagen.embedded import Embedded
from mediagen.storage import signing
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from tests.auth.conftest import create_keys
from tests.fixtures.embedded import embedded_settings

TERMINAL = (job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELED)


@dataclass
class Service:
    app: Embedded
    keys: dict[str, str]
    stub: pb_grpc.MediaGenerationServiceStub
    http: httpx.AsyncClient

    def auth(self, name: str) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.keys[name]}")]

    def headers(self, name: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.keys[name]}"}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.app.http_port}"

    async def generate(self, who: str, prompt: str, request_id: str = "") -> job_pb2.Job:
        request = pb.GenerateMediaRequest(prompt=prompt, request_id=request_id)
        request.parameters.width = request.parameters.height = 64
        response = await self.stub.GenerateMedia(request, metadata=self.auth(who), timeout=10)
        return response.job

    async def watch(self, who: str, job_id: str) -> list[job_pb2.JobEvent]:
        call = self.stub.WatchJob(
            pb.WatchJobRequest(id=job_id), metadata=self.auth(who), timeout=30
        )
        return [response.event async for response in call]

    async def finished(self, who: str, prompt: str) -> job_pb2.Job:
        job = (await self.watch(who, (await self.generate(who, prompt)).id))[-1].job
        assert job.status == job_pb2.JOB_STATE_SUCCEEDED, job
        return job


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    settings = embedded_settings(tmp_path / "data", auth_cache_s=0.0)
    settings.data_dir.mkdir(parents=True)
    keys, _ = await create_keys(settings.effective_database_url)
    app = Embedded(settings)
    await app.start()
    try:
        async with (
            grpc.aio.insecure_channel(app.grpc_target) as channel,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http_port}", timeout=30) as http,
        ):
            yield Service(app, keys, pb_grpc.MediaGenerationServiceStub(channel), http)
    finally:
        await app.stop()


async def grpc_error(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def anonymised(error: grpc.aio.AioRpcError, resource_id: str) -> tuple[object, str, bytes]:
    status = rpc_status.from_call(error)
    assert status is not None
    raw = status.SerializeToString().replace(resource_id.encode(), b"<id>")
    return error.code(), (error.details() or "").replace(resource_id, "<id>"), raw


async def test_over_grpc_a_tenant_cannot_reach_another_tenants_job_or_media(
    service: Service,
) -> None:
    job = await service.finished("acme", "acme's fox")
    (media,) = job.media
    unknown = str(uuid.uuid4())
    globex = service.auth("globex")

    async def get_job(i: str) -> object:
        return await service.stub.GetJob(pb.GetJobRequest(id=i), metadata=globex)

    async def cancel_job(i: str) -> object:
        return await service.stub.CancelJob(pb.CancelJobRequest(id=i), metadata=globex)

    async def get_media(i: str) -> object:
        return await service.stub.GetMedia(pb.GetMediaRequest(id=i), metadata=globex)

    async def watch_job(i: str) -> object:
        return await service.watch("globex", i)

    for call, target in (
        (get_job, job.id),
        (cancel_job, job.id),
        (watch_job, job.id),
        (get_media, media.id),
    ):
        foreign = await grpc_error(call(target))
        missing = await grpc_error(call(unknown))
        assert foreign.code() == grpc.StatusCode.NOT_FOUND, call
        # Code, message and rich details alike once the id is masked: nothing tells them apart.
        assert anonymised(foreign, target) == anonymised(missing, unknown), call

    # globex's listing is empty; acme's and the admin's show the job, the admin's globex's too.
    owl = await service.generate("globex", "globex's owl")
    listed = await service.stub.ListJobs(pb.ListJobsRequest(), metadata=globex)
    assert [j.id for j in listed.jobs] == [owl.id] and listed.total_size == 1
    acme = await service.stub.ListJobs(pb.ListJobsRequest(), metadata=service.auth("acme"))
    assert [j.id for j in acme.jobs] == [job.id]
    admin = service.auth("admin")
    everyone = await service.stub.ListJobs(pb.ListJobsRequest(), metadata=admin)
    assert [(j.id, j.tenant) for j in everyone.jobs] == [(owl.id, "globex"), (job.id, "acme")]
    seen = (await service.stub.GetJob(pb.GetJobRequest(id=job.id), metadata=admin)).job
    assert (seen.id, seen.status, seen.media[0].id) == (job.id, job.status, media.id)
    got = (await service.stub.GetMedia(pb.GetMediaRequest(id=media.id), metadata=admin)).media
    assert got.sha256 == media.sha256
    assert (await service.watch("admin", job.id))[-1].job.status == job_pb2.JOB_STATE_SUCCEEDED
    # Nothing globex did touched acme's job.
    events = await service.watch("acme", job.id)
    assert events[-1].job.status == job_pb2.JOB_STATE_SUCCEEDED
    assert all(e.type != job_pb2.JOB_EVENT_TYPE_CANCEL_REQUESTED for e in events)

    # An admin cancels any tenant's job.
    cancelled = (await service.stub.CancelJob(pb.CancelJobRequest(id=owl.id), metadata=admin)).job
    assert cancelled.status == job_pb2.JOB_STATE_CANCELED or cancelled.cancel_requested


async def test_page_tokens_and_request_ids_belong_to_one_tenant(service: Service) -> None:
    rid = str(uuid.uuid4())
    acme_job = await service.generate("acme", "same key", rid)
    globex_job = await service.generate("globex", "same key", rid)
    assert acme_job.id != globex_job.id  # two tenants, two jobs
    assert (await service.generate("acme", "retried", rid)).id == acme_job.id
    assert (await service.generate("globex", "retried", rid)).id == globex_job.id
    await service.generate("acme", "a second acme job")

    first = await service.stub.ListJobs(
        pb.ListJobsRequest(page_size=1), metadata=service.auth("acme")
    )
    assert first.next_page_token and first.total_size == 2
    for other in ("globex", "admin"):
        error = await grpc_error(
            service.stub.ListJobs(
                pb.ListJobsRequest(page_size=1, page_token=first.next_page_token),
                metadata=service.auth(other),
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, other
        assert "page_token" in (error.details() or "")
    rest = await service.stub.ListJobs(
        pb.ListJobsRequest(page_size=1, page_token=first.next_page_token),
        metadata=service.auth("acme"),
    )
    assert [j.id for j in rest.jobs] == [acme_job.id]


async def test_over_http_a_tenant_cannot_reach_another_tenants_job_or_media(
    service: Service,
) -> None:
    job = await service.finished("acme", "acme's heron")
    (media,) = job.media
    http, globex = service.http, service.headers("globex")
    for path in (
        f"/api/v1/jobs/status/{job.id}",
        f"/api/v1/jobs/{job.id}",
        f"/api/v1/jobs/{job.id}:watch",
        f"/api/v1/media/{media.id}",
    ):
        response = await http.get(path, headers=globex)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["code"] == grpc.StatusCode.NOT_FOUND.value[0]
    cancel = await http.post(f"/api/v1/jobs/{job.id}:cancel", headers=globex, json={})
    assert cancel.status_code == 404
    listed = await http.get("/api/v1/jobs", headers=globex)
    assert listed.status_code == 200 and listed.json().get("jobs", []) == []

    mine = await http.get(f"/api/v1/jobs/{job.id}", headers=service.headers("acme"))
    assert mine.status_code == 200 and mine.json()["status"] == "JOB_STATE_SUCCEEDED"
    admin = await http.get("/api/v1/jobs", headers=service.headers("admin"))
    assert [j["id"] for j in admin.json()["jobs"]] == [job.id]
    without_key = await http.get(f"/api/v1/jobs/{job.id}")
    assert without_key.status_code == 401


async def test_media_urls_are_signed_exact_and_expire(service: Service, tmp_path: Path) -> None:
    job = await service.finished("acme", "acme's lighthouse")
    (media,) = job.media
    url = urlsplit(media.url)
    assert url.path.startswith("/files/") and {k for k, _ in parse_qsl(url.query)} == {
        "expires",
        "signature",
    }

    # The signed URL is the credential: no API key needed, and it serves the exact bytes.
    http = service.http
    download = await http.get(media.url)
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == media.sha256
    assert len(download.content) == media.size_bytes
    partial = await http.get(media.url, headers={"Range": "bytes=0-7"})
    assert (partial.status_code, partial.content) == (206, download.content[:8])
    etag = download.headers["etag"]
    assert (await http.get(media.url, headers={"If-None-Match": etag})).status_code == 304

    # The key alone, an altered signature, another key's signature, an expired URL: 403.
    path = url.path
    params = dict(parse_qsl(url.query))
    key = unquote(path.removeprefix("/files/"))
    other = await service.finished("globex", "globex's key")
    other_path = urlsplit(other.media[0].url).path
    secret = service.app.settings.secret_key
    expired = signing.sign(secret, key, now=time.time() - 120, ttl_s=60)
    tampered = params | {"signature": params["signature"][::-1]}
    forged = signing.sign("not the secret", key, now=time.time(), ttl_s=60)
    for refused in (
        path,
        f"{path}?{urlencode(tampered)}",
        f"{path}?{urlencode(params | {'expires': str(int(params['expires']) + 3600)})}",
        f"{other_path}?{url.query}",  # acme's signature does not open globex's file
        f"{path}?{urlencode(expired)}",
        f"/files/{quote(key)}?{urlencode(forged)}",  # signed with another secret
    ):
        response = await http.get(refused, headers=service.headers("admin"))  # keys don't help
        assert response.status_code == 403, refused
        assert response.json()["code"] == grpc.StatusCode.PERMISSION_DENIED.value[0]

    # The typed client's download-and-verify path works with the signed URL.
    async with MediagenClient(
        service.app.grpc_target, api_key=service.keys["acme"], http_base_url=service.base_url
    ) as client:
        fetched = await client.get_media(media.id)
        saved = await client.download(fetched, tmp_path / "out")
        assert hashlib.sha256(saved.read_bytes()).hexdigest() == media.sha256
    async with MediagenClient(
        service.app.grpc_target, api_key=service.keys["globex"], http_base_url=service.base_url
    ) as client:
        with pytest.raises(NotFoundError):
            await client.get_media(media.id)
        with pytest.raises(NotFoundError):
            await client.get(job.id)
