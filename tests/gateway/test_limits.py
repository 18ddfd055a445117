"""What one HTTP client may cost the gateway, over real loopback sockets: head and body size
and read time, idle connections, open connections, media type, CORS.

Slow clients are driven byte by byte on raw sockets (no HTTP library would send that slowly);
the limits are set small so each case takes well under a second or two.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest

from mediagen.config import HttpSettings
from tests.fixtures.gateway import GatewayStack, fake_stack, running_stack

LIMITS = HttpSettings(
    max_body_bytes=64 * 1024,
    max_header_bytes=4 * 1024,
    header_timeout_s=0.5,
    body_timeout_s=0.5,
    keepalive_s=0.5,
    max_connections=8,
    cors_origins=("https://app.example",),
)
GENERATE = "/api/v1/jobs/generate"


@pytest.fixture
async def stack() -> AsyncIterator[GatewayStack]:
    async with running_stack(fake_stack(http=LIMITS)) as running:
        yield running


@pytest.fixture
async def http(stack: GatewayStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.http_url, timeout=10) as client:
        yield client


async def connect(stack: GatewayStack) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    url = urlsplit(stack.http_url)
    return await asyncio.open_connection(url.hostname, url.port)


async def read_response(reader: asyncio.StreamReader, timeout_s: float = 5) -> tuple[int, bytes]:
    """(status, body) of the response on ``reader``, read until the server closes."""
    raw = await asyncio.wait_for(reader.read(), timeout_s)
    if not raw:
        return 0, b""
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def closed_within(reader: asyncio.StreamReader, timeout_s: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), timeout_s) is not None
    except TimeoutError:
        return False


# --- head ----------------------------------------------------------------------------------


async def test_a_slow_head_is_cut_off_with_408(stack: GatewayStack) -> None:
    reader, writer = await connect(stack)
    started = time.monotonic()
    writer.write(b"GET /api/v1/jobs HTTP/1.1\r\n")
    # A header byte every 0.1 s, then a stall: uvicorn alone would wait forever. (The client
    # stops before the deadline: bytes the server never reads would turn its close into a
    # reset that loses the answer.)
    for byte in b"Host: x\r\nX-Slow: ..":
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.02)
    status, body = await read_response(reader)
    assert status == 408
    assert json.loads(body)["code"] == 4  # DEADLINE_EXCEEDED
    assert time.monotonic() - started < 2
    writer.close()


async def test_a_connection_that_sends_nothing_is_closed(stack: GatewayStack) -> None:
    reader, writer = await connect(stack)
    assert await closed_within(reader, 3)
    writer.close()


async def test_large_heads_are_431(http: httpx.AsyncClient, stack: GatewayStack) -> None:
    # A whole head that arrives at once (h11 buffers only incomplete ones) ...
    response = await http.get("/api/v1/jobs", headers={"X-Big": "y" * 5000})
    assert response.status_code == 431
    assert response.json()["code"] == 3
    # ... one that keeps coming past the limit, and a long URL.
    reader, writer = await connect(stack)
    writer.write(b"GET /api/v1/jobs HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 6000)
    status, _ = await read_response(reader)
    assert status == 431
    writer.close()
    assert (await http.get("/api/v1/jobs/status/" + "z" * 5000)).status_code == 431


async def test_headers_forwarded_as_metadata_are_bounded(http: httpx.AsyncClient) -> None:
    # Under the head limit of a generous gateway, over what a gRPC server takes as metadata.
    headers = {f"Grpc-Metadata-K{i}": "v" * 100 for i in range(200)}
    generous = fake_stack(http=HttpSettings(max_header_bytes=64 * 1024))
    async with running_stack(generous) as big, httpx.AsyncClient(base_url=big.http_url) as client:
        response = await client.get("/api/v1/jobs", headers=headers)
    assert response.status_code == 431, response.text
    assert "forwarded" in response.json()["message"]


# --- body ----------------------------------------------------------------------------------


async def test_a_slow_body_is_408(stack: GatewayStack) -> None:
    reader, writer = await connect(stack)
    body = b'{"prompt": "a red fox"}'
    writer.write(
        b"POST /api/v1/jobs/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body[:5]
    )
    started = time.monotonic()
    status, response = await read_response(reader)
    assert status == 408
    assert json.loads(response)["code"] == 4
    assert time.monotonic() - started < 2
    writer.close()


async def test_an_unread_body_does_not_hold_the_connection(stack: GatewayStack) -> None:
    # GET routes never read a body; trickling one after the answer keeps nothing open.
    reader, writer = await connect(stack)
    writer.write(b"GET /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nab")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    with contextlib.suppress(ConnectionError):
        while not reader.at_eof() and time.monotonic() - started < 4:
            writer.write(b"x")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader.read(65536), 0.1)
    assert reader.at_eof()
    assert time.monotonic() - started < 3
    writer.close()


async def test_bodies_over_the_limit_are_413_before_they_are_read(stack: GatewayStack) -> None:
    reader, writer = await connect(stack)
    writer.write(
        b"POST /api/v1/jobs/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000000000\r\n\r\n"
    )
    status, body = await read_response(reader)
    assert status == 413
    assert json.loads(body)["code"] == 8
    writer.close()


async def test_chunked_bodies_over_the_limit_are_413(stack: GatewayStack) -> None:
    reader, writer = await connect(stack)
    chunk = b"x" * 1024  # 70 KiB in all, a little over the limit, all of it read by the server
    writer.write(
        b"POST /api/v1/jobs/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(70))
    )
    status, body = await read_response(reader)
    assert status == 413
    assert json.loads(body)["code"] == 8
    writer.close()


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",  # what a cross-site <form enctype="text/plain"> sends
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        None,
    ],
)
async def test_bodies_must_be_json(http: httpx.AsyncClient, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = await http.post(GENERATE, content=b'{"prompt": "a red fox"}', headers=headers)
    assert response.status_code == 415
    assert "application/json" in response.json()["message"]


async def test_json_with_a_charset_and_empty_posts_are_accepted(http: httpx.AsyncClient) -> None:
    response = await http.post(
        GENERATE,
        content=b'{"prompt": "a red fox"}',
        headers={"Content-Type": "Application/JSON; charset=utf-8"},
    )
    assert response.status_code == 200, response.text
    # No body and no Content-Type (curl -X POST): it reaches the service, which knows no job.
    cancel = await http.post("/api/v1/jobs/550e8400-e29b-41d4-a716-446655440000:cancel")
    assert cancel.status_code == 404, cancel.text


# --- connections ---------------------------------------------------------------------------


async def test_connections_past_the_limit_get_503(stack: GatewayStack) -> None:
    held = [await connect(stack) for _ in range(LIMITS.max_connections)]
    for _, writer in held:  # every one busy with a request head, so none is idle-closed yet
        writer.write(b"GET /api/v1/jobs HTTP/1.1\r\n")
    await asyncio.sleep(0.05)
    reader, writer = await connect(stack)
    status, body = await read_response(reader)
    assert status == 503
    assert json.loads(body)["code"] == 14
    writer.close()
    for _, held_writer in held:
        held_writer.close()
    await asyncio.sleep(0.1)
    async with httpx.AsyncClient(base_url=stack.http_url) as client:  # room again
        assert (await client.get("/api/v1/jobs")).status_code == 200


async def test_idle_keep_alive_connections_are_closed(stack: GatewayStack) -> None:
    reader, writer = await connect(stack)
    writer.write(b"GET /api/v1/jobs HTTP/1.1\r\nHost: x\r\n\r\n")
    first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert first.startswith(b"HTTP/1.1 200")
    assert await closed_within(reader, 3)
    writer.close()


# --- CORS ----------------------------------------------------------------------------------


async def test_cors_preflight_and_origin_only_for_configured_origins(
    http: httpx.AsyncClient,
) -> None:
    asks = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    allowed = await http.options(GENERATE, headers={"Origin": "https://app.example", **asks})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in allowed.headers["access-control-allow-methods"]
    refused = await http.options(GENERATE, headers={"Origin": "https://evil.example", **asks})
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers

    ok = await http.get("/api/v1/jobs", headers={"Origin": "https://app.example"})
    assert ok.headers["access-control-allow-origin"] == "https://app.example"
    other = await http.get("/api/v1/jobs", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


async def test_cors_is_off_without_configured_origins() -> None:
    async with (
        running_stack(fake_stack()) as plain,
        httpx.AsyncClient(base_url=plain.http_url) as client,
    ):
        preflight = await client.options(
            GENERATE,
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
        )
        simple = await client.get("/api/v1/jobs", headers={"Origin": "https://app.example"})
    assert preflight.status_code == 405  # no CORS layer: OPTIONS is just a method not routed
    assert not any(name.startswith("access-control-") for name in preflight.headers)
    assert not any(name.startswith("access-control-") for name in simple.headers)
