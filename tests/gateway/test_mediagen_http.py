"""The mediagen contract over HTTP, against a fake MediaGenerationService on real gRPC.

Covers the seed REST calls as written in ../shared/seed-api.md, the error mapping for every
gRPC code, NDJSON and SSE streaming (resume, disconnect), headers, health, files and the
OpenAPI document. The real servicer is compared field by field in a later test.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2

from mediagen.errors import HTTP_STATUS
from tests.fixtures.gateway import FAIL_MID_ID, HANG_ID, JOB_ID, MEDIA_ID, signed_path

pytestmark = pytest.mark.asyncio(loop_scope="module")

SEED_BODY = (
    '{"prompt": "A beautiful sunset over mountains",\n'
    ' "parameters": {"width": 1024, "height": 1024, "num_inference_steps": 50, '
    '"guidance_scale": 7.5}}'
)


@pytest.fixture
async def http(gw_fake):
    async with httpx.AsyncClient(base_url=gw_fake.http_url, timeout=10) as client:
        yield client


@pytest.fixture
def fake(gw_fake):
    servicer = gw_fake.servicers[0][1]
    servicer.requests.clear()
    servicer.metadata.clear()
    return servicer


# --- the five seed calls ------------------------------------------------------------------


async def test_seed_create_job(http, fake):
    headers = {"Content-Type": "application/json"}
    response = await http.post("/api/v1/jobs/generate", content=SEED_BODY, headers=headers)
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["id"] == "550e8400-e29b-41d4-a716-446655440000"
    assert job["status"] == "JOB_STATE_PENDING"
    assert job["createTime"] == "2026-01-01T00:00:00Z"
    assert job["statusUrl"] == f"/api/v1/jobs/status/{job['id']}"
    assert job["parameters"] == {
        "width": 1024,
        "height": 1024,
        "numInferenceSteps": 50,
        "guidanceScale": 7.5,
        "negativePrompt": "",  # unpopulated fields without presence are written
        "outputFormat": "OUTPUT_FORMAT_UNSPECIFIED",
    }
    name, request = fake.requests[-1]
    assert name == "GenerateMedia"
    assert request.prompt == "A beautiful sunset over mountains"
    assert request.parameters.num_inference_steps == 50
    assert request.parameters.guidance_scale == 7.5


async def test_seed_job_status(http):
    response = await http.get(f"/api/v1/jobs/status/{JOB_ID}")
    assert response.status_code == 200
    job = response.json()
    assert job["status"] == "JOB_STATE_SUCCEEDED"
    assert job["prompt"] == "A beautiful sunset over mountains"
    assert job["createTime"] == "2026-01-01T00:00:00Z"
    assert job["completeTime"] == "2026-01-01T00:01:40Z"
    media = job["media"][0]
    assert (media["id"], media["url"], media["kind"]) == (
        MEDIA_ID,
        "/files/media-1.png",
        "MEDIA_KIND_IMAGE",
    )
    assert (media["width"], media["height"], media["sizeBytes"]) == (1024, 1024, "123456")
    # The additional binding answers the same.
    assert (await http.get(f"/api/v1/jobs/{JOB_ID}")).json() == job


async def test_seed_list_jobs(http, fake):
    response = await http.get("/api/v1/jobs?page=1&per_page=20&status=completed")
    assert response.status_code == 200
    body = response.json()
    assert [j["id"] for j in body["jobs"]] == [JOB_ID, "job-2"]
    assert body["nextPageToken"] == ""
    assert body["totalSize"] == 2
    request = fake.requests[-1][1]
    assert (request.page, request.per_page, request.status) == (1, 20, "completed")


async def test_seed_get_media(http):
    response = await http.get(f"/api/v1/media/{MEDIA_ID}")
    assert response.status_code == 200
    assert response.json()["mimeType"] == "image/png"


def _statuses(body: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    return body["status"], [(c["name"], c["status"]) for c in body["components"]]


async def test_seed_health(http, gw_fake):
    response = await http.get("/api/v1/health")
    # A server without mediagen's dependency report (grpcio's own servicer): the api alone.
    assert response.status_code == 200
    assert _statuses(response.json()) == ("SERVING", [("api", "SERVING")])
    assert response.json()["components"][0]["latency_ms"] >= 0
    await gw_fake.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    try:
        response = await http.get("/api/v1/health")
        assert response.status_code == 503
        assert _statuses(response.json()) == ("NOT_SERVING", [("api", "SERVING")])
    finally:
        await gw_fake.health.set("", health_pb2.HealthCheckResponse.SERVING)
    unknown = await http.get("/api/v1/health", params={"service": "nope"})
    assert unknown.status_code == 404
    assert unknown.json()["code"] == 5


async def test_health_when_upstream_is_down():
    from mediagen.gateway import build_gateway_app, start_gateway

    channel = grpc.aio.insecure_channel("127.0.0.1:9")  # nothing listens on the discard port
    gateway = await start_gateway(build_gateway_app(channel), "127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
            response = await client.get("/api/v1/health")
        assert response.status_code == 503
        assert _statuses(response.json()) == ("NOT_SERVING", [("api", "NOT_SERVING")])
        assert response.json()["components"][0]["error"] == "UNAVAILABLE"
    finally:
        await gateway.stop()
        await channel.close()


async def test_cancel_job(http):
    response = await http.post(f"/api/v1/jobs/{JOB_ID}:cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "JOB_STATE_CANCELED"
    finished = await http.post("/api/v1/jobs/job-done:cancel", json={})
    assert finished.status_code == 400
    body = finished.json()
    assert body["code"] == 9
    assert body["details"][0]["reason"] == "JOB_ALREADY_FINISHED"
    assert body["details"][1]["@type"] == "type.googleapis.com/google.rpc.PreconditionFailure"


async def test_validation_error_keeps_bad_request_details(http):
    response = await http.post("/api/v1/jobs/generate", json={"prompt": "  "})
    assert response.status_code == 400
    violation = response.json()["details"][-1]["fieldViolations"][0]
    assert (violation["field"], violation["description"]) == ("prompt", "must not be empty")


# --- errors ---------------------------------------------------------------------------------

ERROR_CODES = [c for c in grpc.StatusCode if c is not grpc.StatusCode.OK]


@pytest.mark.parametrize("code", ERROR_CODES, ids=[c.name for c in ERROR_CODES])
async def test_error_mapping(http, code):
    response = await http.get(f"/api/v1/jobs/status/code-{code.value[0]}")
    assert response.status_code == HTTP_STATUS[code]
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["code"] == code.value[0]
    assert body["message"] == f"failed with {code.name}"
    assert body["details"][0] == {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": f"TEST_{code.name}",
        "domain": "mediagen.dev",
        "metadata": {},
    }
    retryable = code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE)
    assert response.headers.get("retry-after") == ("3" if retryable else None)
    if retryable:
        assert body["details"][1] == {
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": "3s",
        }


async def test_not_found_job(http):
    response = await http.get("/api/v1/jobs/status/nope")
    assert response.status_code == 404
    details = response.json()["details"]
    assert details[0]["reason"] == "JOB_NOT_FOUND"
    assert details[1]["resourceName"] == "nope"


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nothing/here", 404, 5),
        ("GET", "/metrics", 404, 5),  # served only when the app is given a metrics endpoint
        ("DELETE", f"/api/v1/jobs/{JOB_ID}", 405, 12),
        ("PUT", "/api/v1/jobs", 405, 12),
        ("POST", "/api/v1/health", 405, 12),
        ("POST", "/openapi.json", 405, 12),
        ("GET", "/api/v1/jobs/generate/more", 404, 5),
    ],
)
async def test_routing_errors(http, method, path, status, code):
    response = await http.request(method, path)
    assert response.status_code == status
    assert response.json() == {
        "code": code,
        "message": "Not Found" if status == 404 else "Method Not Allowed",
        "details": [],
    }


async def test_body_too_large_is_413(http):
    body = b'{"prompt": "' + b"x" * (4 * 1024 * 1024) + b'"}'
    response = await http.post("/api/v1/jobs/generate", content=body)
    assert response.status_code == 413
    assert response.json()["code"] == 8


# --- headers --------------------------------------------------------------------------------


async def test_headers_reach_the_server_and_come_back(http, fake):
    headers = {"Authorization": "Bearer abc", "X-Request-Id": "rid-7", "Grpc-Metadata-Foo": "bar"}
    response = await http.get(f"/api/v1/jobs/{JOB_ID}", headers=headers)
    assert response.status_code == 200
    seen = fake.metadata[-1]
    assert seen["authorization"] == "Bearer abc"
    assert (seen["x-request-id"], seen["foo"]) == ("rid-7", "bar")
    assert response.headers["grpc-metadata-x-request-id"] == "rid-7"
    assert response.headers["grpc-metadata-x-served-by"] == "fake"


async def test_error_responses_carry_header_metadata(http):
    response = await http.get("/api/v1/jobs/nope", headers={"X-Request-Id": "rid-8"})
    assert response.status_code == 404
    assert response.headers["grpc-metadata-x-request-id"] == "rid-8"


# --- WatchJob: NDJSON and SSE ------------------------------------------------------------


async def _ndjson(http, path, **kwargs) -> tuple[int, list[dict[str, Any]]]:
    async with http.stream("GET", path, **kwargs) as response:
        lines = [json.loads(line) async for line in response.aiter_lines() if line]
    return response.status_code, lines


async def test_watch_ndjson(http):
    status, lines = await _ndjson(http, f"/api/v1/jobs/{JOB_ID}:watch")
    assert status == 200
    assert [line["result"]["sequence"] for line in lines] == [str(i) for i in range(1, 6)]
    assert lines[-1]["result"]["job"]["status"] == "JOB_STATE_SUCCEEDED"
    assert lines[0]["result"]["type"] == "JOB_EVENT_TYPE_PROGRESS"


async def test_watch_ndjson_resume_by_query(http):
    _, lines = await _ndjson(http, f"/api/v1/jobs/{JOB_ID}:watch?after_sequence=3")
    assert [line["result"]["sequence"] for line in lines] == ["4", "5"]


async def test_watch_unknown_job_is_404(http):
    response = await http.get("/api/v1/jobs/nope:watch")
    assert response.status_code == 404
    assert response.json()["details"][0]["reason"] == "JOB_NOT_FOUND"


async def test_watch_error_mid_stream(http):
    status, lines = await _ndjson(http, f"/api/v1/jobs/{FAIL_MID_ID}:watch")
    assert status == 200
    assert [line["result"]["sequence"] for line in lines[:2]] == ["1", "2"]
    assert lines[2]["error"]["code"] == 14
    assert lines[2]["error"]["details"][1]["@type"].endswith("RetryInfo")


def _events(text: str) -> list[dict[str, str]]:
    events = []
    for block in text.split("\n\n"):
        if not block or block.startswith(":"):
            continue
        event = {}
        for line in block.split("\n"):
            key, _, value = line.partition(": ")
            event[key] = value
        events.append(event)
    return events


async def test_watch_sse(http):
    headers = {"Accept": "text/event-stream"}
    response = await http.get(f"/api/v1/jobs/{JOB_ID}:watch", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    events = _events(response.text)
    assert [e.get("id") for e in events] == ["1", "2", "3", "4", "5", None]
    assert json.loads(events[0]["data"])["sequence"] == "1"
    assert events[-1] == {"event": "end", "data": "{}"}


async def test_watch_sse_resumes_from_last_event_id(http, fake):
    headers = {"Accept": "text/event-stream", "Last-Event-ID": "3"}
    # The header wins over a stale query value, as a browser reconnects to the same URL.
    response = await http.get(f"/api/v1/jobs/{JOB_ID}:watch?after_sequence=1", headers=headers)
    events = _events(response.text)
    assert [e.get("id") for e in events] == ["4", "5", None]
    assert fake.requests[-1][1].after_sequence == 3


async def test_watch_sse_bad_last_event_id_is_400(http):
    headers = {"Accept": "text/event-stream", "Last-Event-ID": "three"}
    response = await http.get(f"/api/v1/jobs/{JOB_ID}:watch", headers=headers)
    assert response.status_code == 400
    assert response.json()["details"][0]["fieldViolations"][0]["field"] == "Last-Event-ID"


async def test_watch_sse_error_event(http):
    headers = {"Accept": "text/event-stream"}
    response = await http.get(f"/api/v1/jobs/{FAIL_MID_ID}:watch", headers=headers)
    events = _events(response.text)
    assert events[-1]["event"] == "error"
    assert json.loads(events[-1]["data"])["code"] == 14


async def test_watch_sse_heartbeat(http):
    headers = {"Accept": "text/event-stream"}
    async with http.stream("GET", f"/api/v1/jobs/{HANG_ID}:watch", headers=headers) as response:
        chunks = response.aiter_text()
        received = ""
        while ": keep-alive" not in received:
            received += await asyncio.wait_for(anext(chunks), timeout=5)
    assert received.startswith("id: 1\n")


async def _eventually(condition, timeout_s: float = 5.0) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


@pytest.mark.parametrize("accept", ["application/json", "text/event-stream"])
async def test_client_disconnect_ends_the_upstream_call(http, fake, gw_fake, accept):
    await _eventually(lambda: fake.watch_active == 0)  # earlier tests' streams are gone
    fake.watch_cancelled.clear()
    headers = {"Accept": accept}
    async with http.stream("GET", f"/api/v1/jobs/{HANG_ID}:watch", headers=headers) as response:
        assert response.status_code == 200
        await asyncio.wait_for(anext(response.aiter_lines()), timeout=5)
        assert fake.watch_active == 1
        assert len(gw_fake.gateway.app._streams) == 1
    # Leaving the block closed the connection mid-stream: the server sees the cancellation.
    await asyncio.wait_for(fake.watch_cancelled.wait(), timeout=5)
    await _eventually(lambda: fake.watch_active == 0)  # no leaked upstream call
    await _eventually(lambda: not gw_fake.gateway.app._streams)


# --- files ------------------------------------------------------------------------------------


async def test_file_download(http):
    url = signed_path("media-1.png")
    response = await http.get(url)
    assert response.status_code == 200
    assert response.content == bytes(range(256)) * 40
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-length"] == str(256 * 40)
    assert response.headers["accept-ranges"] == "bytes"
    etag = response.headers["etag"]
    assert etag.startswith('"')
    head = await http.head(url)
    assert (head.status_code, head.content, head.headers["etag"]) == (200, b"", etag)
    cached = await http.get(url, headers={"If-None-Match": f'W/"x", {etag}'})
    assert (cached.status_code, cached.content, cached.headers["etag"]) == (304, b"", etag)
    changed = await http.get(url, headers={"If-None-Match": '"other"'})
    assert changed.status_code == 200
    video = await http.get(signed_path("sub/clip.mp4"))
    assert (video.status_code, video.headers["content-type"]) == (200, "video/mp4")


@pytest.mark.parametrize(
    ("range_header", "status", "content_range", "body"),
    [
        ("bytes=0-9", 206, "bytes 0-9/10240", bytes(range(10))),
        ("bytes=10230-", 206, "bytes 10230-10239/10240", bytes(range(246, 256))),
        ("bytes=-3", 206, "bytes 10237-10239/10240", bytes([253, 254, 255])),
        ("bytes=20000-", 416, "bytes */10240", None),
    ],
)
async def test_file_ranges(http, range_header, status, content_range, body):
    response = await http.get(signed_path("media-1.png"), headers={"Range": range_header})
    assert response.status_code == status
    assert response.headers["content-range"] == content_range
    if body is not None:
        assert response.content == body


async def test_file_if_range_mismatch_sends_everything(http):
    headers = {"Range": "bytes=0-9", "If-Range": '"stale"'}
    response = await http.get(signed_path("media-1.png"), headers=headers)
    assert (response.status_code, len(response.content)) == (200, 10240)


async def raw_get(gw_fake, target: str) -> tuple[int, bytes]:
    """A raw socket request: HTTP clients normalise ``..`` away before sending."""
    host, port = gw_fake.http_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/files/missing.png", "missing.png"),
        ("/files/.hidden", ".hidden"),
        ("/files/../outside.txt", "../outside.txt"),
        ("/files/%2e%2e/outside.txt", "../outside.txt"),
        ("/files/sub/%2e%2e/%2e%2e/outside.txt", "sub/../../outside.txt"),
        ("/files/sub/..%2f..%2foutside.txt", "sub/../../outside.txt"),
        ("/files/escape.png", "escape.png"),  # a symbolic link out of the root
        ("/files/sub", "sub"),  # a folder
        ("/files/", ""),
        ("/files//etc/passwd", "/etc/passwd"),
    ],
)
async def test_file_rejects_traversal_and_missing(gw_fake, path, key):
    # Even with a valid signature for the very key (the service never signs such keys).
    query = signed_path(key).split("?", 1)[1]
    status, body = await raw_get(gw_fake, f"{path}?{query}")
    assert status == 404, body
    assert json.loads(body)["code"] == 5


async def test_file_with_an_undecodable_key_is_not_found(gw_fake):
    status, body = await raw_get(gw_fake, "/files/%FF?" + signed_path("x").split("?", 1)[1])
    assert (status, json.loads(body)["code"]) == (404, 5)


@pytest.mark.parametrize(
    "case",
    ["unsigned", "no signature", "no expiry", "other key", "altered", "later expiry", "expired"],
)
async def test_file_refuses_unsigned_altered_and_expired_urls(http, case):
    good = signed_path("media-1.png")
    expires = good.split("expires=")[1].split("&")[0]
    signature = good.split("signature=")[1]
    target = {
        "unsigned": "/files/media-1.png",
        "no signature": f"/files/media-1.png?expires={expires}",
        "no expiry": f"/files/media-1.png?signature={signature}",
        "other key": f"/files/sub/clip.mp4?expires={expires}&signature={signature}",
        "altered": good[:-1] + ("0" if good[-1] != "0" else "1"),
        "later expiry": f"/files/media-1.png?expires={int(expires) + 1}&signature={signature}",
        "expired": signed_path("media-1.png", ttl_s=0, now=time.time() - 5),
    }[case]
    for response in (await http.get(target), await http.head(target)):
        assert response.status_code == 403, response.text
        assert bytes(range(256)) not in response.content  # none of the file
    body = (await http.get(target)).json()
    assert body["code"] == 7  # PERMISSION_DENIED, as grpc-gateway maps 403
    assert ("expired" in body["message"]) == (case == "expired")
    # The same refusal for a file that does not exist: a refusal confirms nothing.
    missing = target.replace("media-1.png", "nope.png").replace("sub/clip.mp4", "nope.png")
    assert (await http.get(missing)).status_code == 403


async def test_file_methods(http):
    response = await http.post(signed_path("media-1.png"))
    assert response.status_code == 405


# --- OpenAPI and docs --------------------------------------------------------------------


async def test_openapi_document(http):
    from openapi_spec_validator import validate

    response = await http.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    validate(document)
    assert document["openapi"] == "3.0.3"
    paths = document["paths"]
    assert set(paths) == {
        "/api/v1/jobs/generate",
        "/api/v1/jobs/status/{id}",
        "/api/v1/jobs/{id}",
        "/api/v1/jobs",
        "/api/v1/jobs/{id}:watch",
        "/api/v1/media/{id}",
        "/api/v1/jobs/{id}:cancel",
        "/api/v1/health",
        "/files/{key}",
    }
    generate = paths["/api/v1/jobs/generate"]["post"]
    assert generate["description"].startswith("Admits a generation job (PENDING)")
    assert generate["responses"]["default"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/google.rpc.Status"
    }
    assert generate["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/mediagen.v1.Job"
    }
    listing = {p["name"]: p for p in paths["/api/v1/jobs"]["get"]["parameters"]}
    assert set(listing) == {
        "page_size",
        "page_token",
        "status",
        "page",
        "per_page",
        "model",
        "created_after",
        "created_before",
    }
    assert listing["created_after"]["schema"] == {"type": "string", "format": "date-time"}
    assert listing["per_page"]["description"].startswith("Optional. Page length")
    watch = paths["/api/v1/jobs/{id}:watch"]["get"]
    assert {p["name"] for p in watch["parameters"]} == {"id", "after_sequence", "Last-Event-ID"}
    stream = watch["responses"]["200"]["content"]["application/x-ndjson"]["schema"]
    assert stream["title"] == "Stream result of mediagen.v1.JobEvent"
    schemas = document["components"]["schemas"]
    request = schemas["mediagen.v1.GenerateMediaRequest"]
    assert request["required"] == ["prompt"]
    assert request["description"] == "Request for GenerateMedia."
    job = schemas["mediagen.v1.Job"]["properties"]
    assert job["status"]["readOnly"] is True
    assert job["status"]["allOf"] == [{"$ref": "#/components/schemas/mediagen.v1.JobState"}]
    assert job["createTime"]["format"] == "date-time"
    assert schemas["mediagen.v1.Media"]["properties"]["sizeBytes"]["type"] == "string"
    assert "JOB_STATE_SUCCEEDED" in schemas["mediagen.v1.JobState"]["enum"]
    assert "Finished: every output" in schemas["mediagen.v1.JobState"]["description"]
    assert schemas["google.rpc.Status"]["properties"]["details"]["items"] == {
        "$ref": "#/components/schemas/google.protobuf.Any"
    }


async def test_swagger_ui(http):
    page = await http.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'url: "/openapi.json"' in page.text
    assert "/docs/swagger-ui-bundle.js" in page.text
    assert "https://" not in page.text  # nothing from a CDN
    script = await http.get("/docs/swagger-ui-bundle.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert len(script.content) > 100_000
    assert (await http.get("/docs/swagger-ui.css")).status_code == 200
    assert (await http.get("/docs/../pyproject.toml")).status_code == 404
    assert (await http.get("/docs/index.html")).status_code == 404
