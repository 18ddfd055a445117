"""schemathesis over the real ``/openapi.json`` of the embedded service with authentication
enforced (keys in its database): with a tenant's key no 5xx, every response fits the document
and real ids reach 200s; without a key every RPC answers 401 (a body and a ``WWW-Authenticate``
that fit the document) while health and signed file URLs still work; another tenant's key
never reaches the job or its media.

Bounded and deterministic: ``GATEWAY_REAL_FUZZ_EXAMPLES`` examples per operation and run
(default 20). Each run prints how many cases it made.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from urllib.parse import unquote

import grpc
import httpx
import pytest

from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from tests.auth.conftest import Secured
from tests.integration.test_gateway_real import TERMINAL, fuzz

pytest.importorskip("schemathesis")

#: Operations that are not RPCs: they answer without a key.
OPEN = ("GET /api/v1/health", "GET /files/{key}")
#: What the gateway refuses itself before any call reaches the API (a body or a parameter it
#: cannot map, a route variable that does not match): no credentials are checked for those.
GATEWAY_OWN = {400, 404, 405, 413, 415}
READS_BY_ID = ("GET /api/v1/jobs/status/{id}", "GET /api/v1/jobs/{id}", "GET /api/v1/media/{id}")


def total(seen: dict[str, Counter[int]]) -> int:
    return sum(counts.total() for counts in seen.values())


async def finished_job(secured: Secured) -> job_pb2.Job:
    """A job of tenant ``acme``, generated and watched until it is done."""
    async with grpc.aio.insecure_channel(secured.app.grpc_target) as channel:
        stub = pb_grpc.MediaGenerationServiceStub(channel)
        metadata = secured.bearer("acme")
        created = await stub.GenerateMedia(
            pb.GenerateMediaRequest(prompt="fuzz target"), metadata=metadata, timeout=30
        )
        call = stub.WatchJob(pb.WatchJobRequest(id=created.job.id), metadata=metadata, timeout=60)
        final = [response.event async for response in call][-1].job
    assert final.status in TERMINAL
    return final


async def test_schemathesis_against_the_authenticated_gateway(secured: Secured) -> None:
    job = await finished_job(secured)
    assert job.status == job_pb2.JOB_STATE_SUCCEEDED, job.error
    (media,) = job.media
    key_and_query = unquote(media.url.split("/files/", 1)[1])
    known = [("id", job.id), ("id", media.id), ("key", key_and_query)]
    base = f"http://127.0.0.1:{secured.app.http_port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        document = (await http.get("/openapi.json")).json()  # the document needs no key

    # Every RPC documents the refusals it may give before it runs.
    for item in document["paths"].values():
        for operation in item.values():
            if operation["tags"] != ["Gateway"]:
                assert {"401", "403", "429"} <= set(operation["responses"]), operation
                assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]

    def bearer(name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {secured.keys[name]}"}

    # 1. The owner's key: no 5xx, responses fit the document, real ids reach 200s.
    owner = await asyncio.to_thread(fuzz, base, document, known, bearer("acme"))
    print(f"\nschemathesis with a tenant's key: {total(owner)} cases")
    assert len(owner) == 9, sorted(owner)
    for operation in (
        *READS_BY_ID,
        "GET /files/{key}",
        "GET /api/v1/jobs",
        "POST /api/v1/jobs/generate",
    ):
        assert owner[operation][200] > 0, (operation, owner[operation])
    # The key is good for every RPC (a file URL's own signature is what /files checks).
    refused = {op: c for op, c in owner.items() if op not in OPEN and (c[401] or c[403])}
    assert not refused, refused

    # 2. No key: every RPC is 401 (unless the gateway refused the request's shape first);
    # health and the signed file URL need no key.
    anonymous = await asyncio.to_thread(fuzz, base, document, known)
    print(f"schemathesis without a key: {total(anonymous)} cases")
    for operation, counts in anonymous.items():
        if operation in OPEN:
            assert counts[200] > 0, (operation, counts)
        else:
            assert counts[401] > 0, (operation, counts)
            assert set(counts) <= {401} | GATEWAY_OWN, (operation, counts)

    # 3. Another tenant's key with acme's real ids: never a 200 on them, and nothing of acme's
    # is listed.
    stranger = await asyncio.to_thread(fuzz, base, document, known, bearer("globex"))
    print(f"schemathesis with another tenant's key: {total(stranger)} cases")
    for operation in READS_BY_ID:
        assert 200 not in stranger[operation], (operation, stranger[operation])
        assert stranger[operation][404] > 0, (operation, stranger[operation])
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        listed = (await http.get("/api/v1/jobs", headers=bearer("globex"))).json()
    assert job.id not in {listed_job["id"] for listed_job in listed.get("jobs", [])}
