"""Issue 3 against the real service: the JSON gateway in front of the real servicer, store,
worker and the Replicate emulator, exactly as ``mediagen serve`` runs them (``embedded``).

- every RPC over HTTP and over gRPC, compared field by field (the HTTP JSON parsed strictly into
  the proto message, so a key the contract does not know fails), plus the JSON shape a REST
  user sees;
- the five REST calls of ``../shared/seed-api.md`` as written, and the errors a REST user gets;
- bad input that PostgreSQL cannot store (NUL) is 400 on SQLite and on PostgreSQL alike;
- schemathesis against the real ``/openapi.json`` (bounded, deterministic): no 5xx, every
  response fits the document.

The gateway's own behaviour (routing, every status code, SSE, disconnects) is covered against a
fake servicer in ``tests/gateway``; here the point is that the real servicer's answers survive
the trip through the gateway unchanged.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote

import grpc
import httpx
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from PIL import Image

from mediagen.embedded import Embedded
from mediagen.storage.local import LocalStorage
from mediagen.v1 import job_pb2, media_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from tests.fixtures.embedded import embedded_settings

Stub = pb_grpc.MediaGenerationServiceStub
Json = dict[str, Any]
M = TypeVar("M", bound=Message)

#: The create call of seed-api.md, byte for byte (line break included).
SEED_BODY = (
    '{"prompt": "A beautiful sunset over mountains",\n'
    ' "parameters": {"width": 1024, "height": 1024, "num_inference_steps": 50, '
    '"guidance_scale": 7.5}}'
)
TERMINAL = (job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELED)
LOWER_CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"


@pytest.fixture
async def http(embedded: Embedded) -> AsyncIterator[httpx.AsyncClient]:
    # Media URLs are signed with the time they are made (and expire, as S3 presigned URLs
    # do), so two answers a second apart differ in their URLs' query. Every URL of these tests
    # is signed at one moment instead, so answers of the same moment compare equal field by
    # field; a real download checks that the URL itself works.
    assert embedded.core is not None and isinstance(embedded.core.storage, LocalStorage)
    moment = time.time()
    embedded.core.storage.clock = lambda: moment
    base = f"http://{embedded.settings.host}:{embedded.http_port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        yield client


def parse(data: Any, message: M) -> M:
    """The HTTP JSON as the proto message. Unknown keys fail: the gateway must not invent any."""
    return json_format.ParseDict(data, message, ignore_unknown_fields=False)


def ok_json(response: httpx.Response) -> Json:
    assert response.status_code == 200, f"{response.request.url}: {response.text}"
    assert response.headers["content-type"].startswith("application/json")
    body: Json = response.json()
    return body


async def watch(stub: Stub, job_id: str, after: int = 0) -> list[job_pb2.JobEvent]:
    call = stub.WatchJob(pb.WatchJobRequest(id=job_id, after_sequence=after), timeout=30)
    return [response.event async for response in call]


async def finish(stub: Stub, job_id: str) -> job_pb2.Job:
    """Wait (by watching) until the job is terminal; nothing about it changes afterwards."""
    final = (await watch(stub, job_id))[-1].job
    assert final.status in TERMINAL
    return final


async def watch_http(http: httpx.AsyncClient, job_id: str, after: int = 0) -> list[Json]:
    response = await http.get(f"/api/v1/jobs/{job_id}:watch", params={"after_sequence": after})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in response.text.splitlines() if line.strip()]
    # grpc-gateway's framing: one {"result": event} per message, and no error line at the end.
    assert all(list(line) == ["result"] for line in lines), lines
    return [line["result"] for line in lines]


def not_lower_camel(value: Any, where: str = "") -> list[str]:
    """Keys a REST user would not expect. Map keys (``labels``) are the caller's own."""
    bad: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if not LOWER_CAMEL.match(key) and key != "@type":
                bad.append(where + key)
            if key != "labels":
                bad += not_lower_camel(item, f"{where}{key}.")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            bad += not_lower_camel(item, f"{where}[{index}].")
    return bad


def without_identity(job: job_pb2.Job) -> job_pb2.Job:
    """A fresh job minus what differs between two jobs made from the same request."""
    copy = job_pb2.Job()
    copy.CopyFrom(job)
    for name in ("id", "status_url", "create_time", "update_time", "estimated_completion_time"):
        copy.ClearField(name)
    return copy


# --- 1. every RPC, HTTP vs gRPC -------------------------------------------------------------


async def test_every_rpc_matches_over_http_and_grpc(stub: Stub, http: httpx.AsyncClient) -> None:
    # GenerateMedia: the same request (seed body plus labels) once over each transport, each
    # with its own idempotency key so it can be replayed once the job has finished.
    body = json.loads(SEED_BODY) | {"labels": {"suite": "gateway"}}
    key_http, key_grpc = str(uuid.uuid4()), str(uuid.uuid4())
    created_http = ok_json(
        await http.post("/api/v1/jobs/generate", json=body | {"requestId": key_http})
    )
    created_grpc = (
        await stub.GenerateMedia(parse(body | {"request_id": key_grpc}, pb.GenerateMediaRequest()))
    ).job
    job_http = parse(created_http, job_pb2.Job())
    assert job_http.status == job_pb2.JOB_STATE_PENDING
    assert without_identity(job_http) == without_identity(created_grpc)
    for job in (job_http, created_grpc):
        assert job.status_url == f"/api/v1/jobs/status/{job.id}"
        assert job.estimated_completion_time.ToDatetime() > job.create_time.ToDatetime()

    # CancelJob on a fresh job: the HTTP route ends it (at once if still PENDING, through the
    # worker if it already started RUNNING); the 1 s prediction cannot beat a loopback call.
    doomed = (await stub.GenerateMedia(pb.GenerateMediaRequest(prompt="cancel me"))).job
    cancelled = parse(ok_json(await http.post(f"/api/v1/jobs/{doomed.id}:cancel")), job_pb2.Job())
    assert cancelled.id == doomed.id
    assert cancelled.status == job_pb2.JOB_STATE_CANCELED or cancelled.cancel_requested

    done = await asyncio.gather(*(finish(stub, j.id) for j in (job_http, created_grpc, doomed)))
    assert [j.status for j in done] == [
        job_pb2.JOB_STATE_SUCCEEDED,
        job_pb2.JOB_STATE_SUCCEEDED,
        job_pb2.JOB_STATE_CANCELED,
    ]
    # From here on nothing changes, so an HTTP answer and a gRPC answer are of the same moment.

    # GetJob, both HTTP bindings.
    for job in done:
        over_grpc = (await stub.GetJob(pb.GetJobRequest(id=job.id))).job
        assert over_grpc == job
        for path in (f"/api/v1/jobs/status/{job.id}", f"/api/v1/jobs/{job.id}"):
            assert parse(ok_json(await http.get(path)), job_pb2.Job()) == over_grpc, path

    # GenerateMedia again with a used key returns that key's (now finished) job on both sides.
    replay_http = ok_json(
        await http.post("/api/v1/jobs/generate", json=body | {"requestId": key_http})
    )
    replay_grpc = await stub.GenerateMedia(
        parse(body | {"request_id": key_http}, pb.GenerateMediaRequest())
    )
    assert parse(replay_http, job_pb2.Job()) == replay_grpc.job == done[0]

    # CancelJob of a CANCELED job returns it unchanged, on both sides.
    again_http = ok_json(await http.post(f"/api/v1/jobs/{doomed.id}:cancel", json={}))
    again_grpc = (await stub.CancelJob(pb.CancelJobRequest(id=doomed.id))).job
    assert parse(again_http, job_pb2.Job()) == again_grpc == done[2]

    # GetMedia: every output, and the same media (URL included) as inside the job.
    succeeded = done[:2]
    for job in succeeded:
        assert len(job.media) == 1
        for media in job.media:
            over_grpc_media = (await stub.GetMedia(pb.GetMediaRequest(id=media.id))).media
            over_http = parse(
                ok_json(await http.get(f"/api/v1/media/{media.id}")), media_pb2.Media()
            )
            assert over_http == over_grpc_media == media
            assert media.url.startswith("http://")

    # WatchJob: the NDJSON stream is the gRPC stream, event for event, also when resuming.
    for job in done:
        events = await watch(stub, job.id)
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        assert [parse(e, job_pb2.JobEvent()) for e in await watch_http(http, job.id)] == events
        resumed = [parse(e, job_pb2.JobEvent()) for e in await watch_http(http, job.id, after=2)]
        assert resumed == await watch(stub, job.id, after=2) == events[2:]

    await compare_list_jobs(stub, http, newest_first=[j.id for j in reversed(done)])
    check_rest_shape(
        ok_json(await http.get(f"/api/v1/jobs/{done[0].id}")),
        await watch_http(http, done[0].id),
        done[0],
    )


async def compare_list_jobs(stub: Stub, http: httpx.AsyncClient, newest_first: list[str]) -> None:
    async def both(params: Mapping[str, str | int]) -> pb.ListJobsResponse:
        over_http = ok_json(await http.get("/api/v1/jobs", params=params))
        # ParseDict takes the proto field names of the query string, so one dict makes both.
        over_grpc = await stub.ListJobs(parse(dict(params), pb.ListJobsRequest()))
        assert parse(over_http, pb.ListJobsResponse()) == over_grpc, params
        return over_grpc

    everything = await both({})
    assert [j.id for j in everything.jobs] == newest_first
    assert (everything.total_size, everything.next_page_token) == (3, "")

    # AIP-158 paging: the token from either transport is the same and leads to the same page.
    first = await both({"page_size": 2})
    assert first.next_page_token and first.total_size == 3
    second = await both({"page_size": 2, "page_token": first.next_page_token})
    assert second.next_page_token == ""
    assert [j.id for j in (*first.jobs, *second.jobs)] == newest_first

    # The seed's offset paging.
    pages = [await both({"page": page, "per_page": 2}) for page in (1, 2, 3)]
    assert [[j.id for j in p.jobs] for p in pages] == [newest_first[:2], newest_first[2:], []]
    assert all(p.next_page_token == "" and p.total_size == 3 for p in pages)

    # The seed's status word, with token paging across the filtered set.
    completed = await both({"status": "completed"})
    assert [j.id for j in completed.jobs] == newest_first[1:]  # the cancelled one is left out
    assert all(j.status == job_pb2.JOB_STATE_SUCCEEDED for j in completed.jobs)
    one = await both({"status": "completed", "page_size": 1})
    rest = await both({"status": "completed", "page_size": 1, "page_token": one.next_page_token})
    assert [j.id for j in (*one.jobs, *rest.jobs)] == newest_first[1:]
    assert (await both({"status": "JOB_STATE_CANCELED"})).total_size == 1

    # Model and creation-time filters (Timestamps as RFC 3339 in the query), paged, and a token
    # that is only good for the filter it came from.
    created = [j.create_time.ToJsonString() for j in everything.jobs]
    model = everything.jobs[0].model
    assert (await both({"model": model})).total_size == 3
    assert (await both({"model": "acme/audio-gen"})).total_size == 0
    window = {"model": model, "createdAfter": created[2], "createdBefore": created[0]}
    newer = await both({**window, "pageSize": 1})
    assert [j.id for j in newer.jobs] == newest_first[1:2] and newer.total_size == 2
    recent = await both({"created_after": created[1], "page_size": 1})
    assert recent.total_size == 2 and recent.next_page_token
    refused = await http.get(
        "/api/v1/jobs", params={"createdAfter": created[2], "pageToken": recent.next_page_token}
    )
    assert refused.status_code == 400
    (violation,) = refused.json()["details"][1]["fieldViolations"]
    assert violation["field"] == "page_token" and "different filter" in violation["description"]
    bad = await http.get(
        "/api/v1/jobs",
        params={"model": "no model", "createdAfter": created[0], "createdBefore": created[2]},
    )
    assert bad.status_code == 400
    fields = [v["field"] for v in bad.json()["details"][1]["fieldViolations"]]
    assert fields == ["model", "created_before"]


def check_rest_shape(job: Json, events: list[Json], expected: job_pb2.Job) -> None:
    """What a REST user reads: proto3 JSON names and spellings, not Python's or the proto's."""
    assert not_lower_camel(job) == []
    assert not_lower_camel(events) == []
    assert job["status"] == "JOB_STATE_SUCCEEDED"
    assert job["statusUrl"] == f"/api/v1/jobs/status/{expected.id}"
    assert job["createTime"].endswith("Z") and job["completeTime"].endswith("Z")
    assert job["parameters"]["numInferenceSteps"] == 50
    assert job["labels"] == {"suite": "gateway"}
    (media,) = job["media"]
    assert media["kind"] == "MEDIA_KIND_IMAGE"
    assert media["mimeType"] == "image/png"
    # int64 is a string in proto3 JSON (JavaScript numbers lose precision past 2**53).
    assert media["sizeBytes"] == str(expected.media[0].size_bytes)
    assert [e["sequence"] for e in events] == [str(n) for n in range(1, len(events) + 1)]
    assert events[-1]["type"] == "JOB_EVENT_TYPE_STATE_CHANGED"
    assert events[-1]["job"] == job


# --- 2. the seed's REST calls as written ----------------------------------------------------


async def test_seed_rest_calls_as_written(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/api/v1/jobs/generate",
        content=SEED_BODY,
        headers={"Content-Type": "application/json"},
    )
    created = ok_json(response)
    for key in ("id", "status", "statusUrl", "createTime", "estimatedCompletionTime"):
        assert key in created, key
    job_id = created["id"]
    assert uuid.UUID(job_id)
    assert created["status"] == "JOB_STATE_PENDING"
    assert created["statusUrl"] == f"/api/v1/jobs/status/{job_id}"

    # Poll the status URL as a REST client would, until the job is done.
    deadline = time.monotonic() + 30
    while True:
        job = ok_json(await http.get(created["statusUrl"]))
        if job["status"] not in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING"):
            break
        assert time.monotonic() < deadline, "the job did not finish in 30 s"
        await asyncio.sleep(0.1)
    assert job["status"] == "JOB_STATE_SUCCEEDED", job
    assert job["prompt"] == "A beautiful sunset over mountains"
    assert job["createTime"] == created["createTime"] and "completeTime" in job
    (media,) = job["media"]
    assert (media["kind"], media["width"], media["height"]) == ("MEDIA_KIND_IMAGE", 1024, 1024)

    # The URL serves the very bytes the job describes.
    download = await http.get(media["url"])
    assert download.status_code == 200
    assert download.headers["content-type"] == "image/png"
    assert download.content.startswith(PNG_SIGNATURE)
    assert hashlib.sha256(download.content).hexdigest() == media["sha256"]
    assert len(download.content) == int(media["sizeBytes"])
    assert Image.open(io.BytesIO(download.content)).size == (1024, 1024)

    listed = ok_json(await http.get("/api/v1/jobs?page=1&per_page=20&status=completed"))
    assert [j["id"] for j in listed["jobs"]] == [job_id]
    assert listed["jobs"][0] == job and listed["totalSize"] == 1

    assert ok_json(await http.get(f"/api/v1/media/{media['id']}")) == media

    health = await http.get("/api/v1/health")
    assert (health.status_code, health.json()["status"]) == (200, "SERVING")
    assert {c["name"]: c["status"] for c in health.json()["components"]} == {
        "api": "SERVING",
        "database": "SERVING",
        "storage": "SERVING",
    }


def error_body(response: httpx.Response, http_status: int, code: grpc.StatusCode) -> Json:
    """grpc-gateway's error body; it must also be a valid google.rpc.Status."""
    assert response.status_code == http_status, response.text
    assert response.headers["content-type"] == "application/json"
    body: Json = response.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == code.value[0] and body["message"]
    parse(body, status_pb2.Status())
    return body


def detail(body: Json, type_url: str) -> Json:
    found: list[Json] = [d for d in body["details"] if d["@type"] == type_url]
    assert found, body
    return found[0]


def unpack(body: Json, message: M) -> M:
    """The body's detail of ``message``'s type, through google.rpc.Status's own JSON rules."""
    for item in parse(body, status_pb2.Status()).details:
        if item.Unpack(message):
            return message
    raise AssertionError(f"no {message.DESCRIPTOR.full_name} in {body}")


async def test_errors_from_the_real_servicer(stub: Stub, http: httpx.AsyncClient) -> None:
    bad = error_body(
        await http.post("/api/v1/jobs/generate", json={"prompt": ""}),
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    violations = unpack(bad, error_details_pb2.BadRequest())
    assert [v.field for v in violations.field_violations] == ["prompt"]
    assert ok_json(await http.get("/api/v1/jobs"))["totalSize"] == 0  # nothing was stored

    malformed = await http.post(
        "/api/v1/jobs/generate",
        content=b'{"prompt": "unterminated',
        headers={"Content-Type": "application/json"},
    )
    error_body(malformed, 400, grpc.StatusCode.INVALID_ARGUMENT)

    bad_token = error_body(
        await http.get("/api/v1/jobs", params={"page_token": "not-a-token"}),
        400,
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    token_violations = detail(bad_token, BAD_REQUEST_TYPE)["fieldViolations"]
    assert [v["field"] for v in token_violations] == ["page_token"]

    unknown = str(uuid.uuid4())
    for path in (
        f"/api/v1/jobs/status/{unknown}",
        f"/api/v1/jobs/{unknown}",
        f"/api/v1/jobs/{unknown}:watch",
        f"/api/v1/media/{unknown}",
    ):
        missing = error_body(await http.get(path), 404, grpc.StatusCode.NOT_FOUND)
        assert detail(missing, ERROR_INFO_TYPE)["reason"] in ("JOB_NOT_FOUND", "MEDIA_NOT_FOUND")
    error_body(await http.post(f"/api/v1/jobs/{unknown}:cancel"), 404, grpc.StatusCode.NOT_FOUND)

    job = await finish(
        stub, (await stub.GenerateMedia(pb.GenerateMediaRequest(prompt="fox"))).job.id
    )
    assert job.status == job_pb2.JOB_STATE_SUCCEEDED
    finished = error_body(
        await http.post(f"/api/v1/jobs/{job.id}:cancel"),
        400,  # grpc-gateway maps FAILED_PRECONDITION to 400, not 409 or 412
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert detail(finished, ERROR_INFO_TYPE)["reason"] == "JOB_ALREADY_FINISHED"
    # The refused cancel changed nothing.
    assert (await stub.GetJob(pb.GetJobRequest(id=job.id))).job == job


@pytest.fixture
async def http_on(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The embedded service on SQLite and on PostgreSQL (what a distributed deployment uses)."""
    app = Embedded(embedded_settings(tmp_path / "service", database_url=database_url))
    await app.start()
    try:
        base = f"http://{app.settings.host}:{app.http_port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            yield client
    finally:
        await app.stop()


async def test_nul_characters_are_bad_input_on_every_database(http_on: httpx.AsyncClient) -> None:
    # PostgreSQL refuses U+0000 in text, so these were 500 INTERNAL there (SQLite stored them).
    # They are the caller's mistake, on either database: 400 naming the field.
    requests: list[tuple[str, str, Json | None, str]] = [
        ("POST", "/api/v1/jobs/generate", {"prompt": "a\x00b"}, "prompt"),
        (
            "POST",
            "/api/v1/jobs/generate",
            {"prompt": "fox", "parameters": {"negativePrompt": "blur\x00"}},
            "parameters.negative_prompt",
        ),
        ("GET", "/api/v1/jobs/status/%00", None, "id"),
        ("GET", "/api/v1/jobs/%00", None, "id"),
        ("GET", "/api/v1/jobs/%00:watch", None, "id"),
        ("GET", "/api/v1/media/%00", None, "id"),
        ("POST", "/api/v1/jobs/%00:cancel", None, "id"),
    ]
    for method, path, body, field in requests:
        response = await http_on.request(method, path, json=body)
        bad = error_body(response, 400, grpc.StatusCode.INVALID_ARGUMENT)
        violations = unpack(bad, error_details_pb2.BadRequest()).field_violations
        assert [v.field for v in violations] == [field], (path, body)
    assert ok_json(await http_on.get("/api/v1/jobs"))["totalSize"] == 0


# --- 3. schemathesis against the real /openapi.json -----------------------------------------

#: Generated examples per operation; the default keeps the run well under 30 s.
FUZZ_EXAMPLES = int(os.environ.get("GATEWAY_REAL_FUZZ_EXAMPLES", "20"))


def fuzz(
    base_url: str,
    document: Json,
    known: list[tuple[str, str]],
    headers: Mapping[str, str] | None = None,
) -> dict[str, Counter[int]]:
    """Run schemathesis over every operation (synchronously: call it from a thread so the
    service, which lives on the test's event loop, keeps answering). Returns how many times
    each HTTP status was seen, per operation (``"GET /api/v1/jobs/{id}"``); ``headers`` go with
    every request (an ``Authorization``).

    ``known``: (path parameter, value) pairs of things that exist. Random ids only reach
    NOT_FOUND, so some cases use a real job's or media's id, or a stored file's key, instead:
    the real servicer's successful answers (and a finished job's cancel) are checked too. A
    value may end in ``?<query>`` (a signed file URL's): those query parameters are set too.
    """
    # Imported here: without schemathesis only this test is skipped, not the whole module.
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from schemathesis.checks import not_a_server_error
    from schemathesis.core.result import Ok
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
    ]
    schema = schemathesis.openapi.from_dict(document)
    operations = []
    for result in schema.get_all_operations():
        # A part of the document schemathesis cannot read would otherwise go untested.
        assert isinstance(result, Ok), result.err()
        operations.append(result.ok())

    def label(operation: Any) -> str:
        return f"{operation.method.upper()} {operation.path}"

    seen: dict[str, Counter[int]] = {label(operation): Counter() for operation in operations}
    for operation in operations:
        names = re.findall(r"{(\w+)}", operation.path)
        choices = [None, *(pair for pair in known if pair[0] in names)]
        cases = st.tuples(operation.as_strategy(), st.sampled_from(choices))

        @given(pair=cases)
        @settings(
            max_examples=FUZZ_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(pair: tuple[Any, tuple[str, str] | None]) -> None:
            case, substitute = pair
            if substitute is not None and substitute[0] in (case.path_parameters or {}):
                value, _, query = substitute[1].partition("?")
                case.path_parameters[substitute[0]] = value
                if query:
                    case.query = {**(case.query or {}), **dict(parse_qsl(query))}
            response = case.call_and_validate(
                base_url=base_url, headers=dict(headers or {}), checks=checks, timeout=15
            )
            seen[label(case.operation)][response.status_code] += 1

        check()
    return seen


async def test_schemathesis_finds_no_server_error(stub: Stub, http: httpx.AsyncClient) -> None:
    pytest.importorskip("schemathesis")
    job = (await stub.GenerateMedia(pb.GenerateMediaRequest(prompt="fuzz target"))).job
    job = await finish(stub, job.id)
    assert job.status == job_pb2.JOB_STATE_SUCCEEDED
    document = ok_json(await http.get("/openapi.json"))
    (media,) = job.media
    # The key as stored, with the signed URL's query (the path part of the URL is quoted).
    key_and_query = unquote(media.url.split("/files/", 1)[1])
    known = [("id", job.id), ("id", media.id), ("key", key_and_query)]
    seen = await asyncio.to_thread(fuzz, str(http.base_url).rstrip("/"), document, known)
    print(f"\nschemathesis (authentication off): {sum(c.total() for c in seen.values())} cases")
    # Every RPC binding (7), health and files: nothing in the document went untested ...
    assert len(seen) == 9, sorted(seen)
    # ... and the real ids and key did reach the servicer's (and the file route's) answers.
    for operation in (
        "GET /api/v1/jobs/status/{id}",
        "GET /api/v1/jobs/{id}",
        "GET /api/v1/media/{id}",
        "GET /files/{key}",
    ):
        assert 200 in seen[operation], (operation, seen[operation])
