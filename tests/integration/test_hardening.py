"""Issue 7 against the real embedded service, over real gRPC channels and real HTTP: hostile
input gets the caller's error (INVALID_ARGUMENT, NOT_FOUND) with the field named, never
INTERNAL, UNKNOWN or a misleading RESOURCE_EXHAUSTED; and the page-token key is private."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import stat
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2, status_pb2

from mediagen.embedded import Embedded
from mediagen.jobs.pagination import Cursor, encode_token
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc
from tests.fixtures.embedded import embedded_settings
from tests.support.wire import deep_extra_input, length_delimited

Stub = pb_grpc.MediaGenerationServiceStub
SERVICE = "/mediagen.v1.MediaGenerationService"
JSON = {"Content-Type": "application/json"}
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"


def violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """field -> description of the BadRequest in the error's rich status, which must agree
    with the call's code and message."""
    details = dict(error.trailing_metadata() or ()).get("grpc-status-details-bin")
    assert isinstance(details, bytes), "no google.rpc.Status in the trailers"
    rich = status_pb2.Status.FromString(details)
    assert (rich.code, rich.message) == (error.code().value[0], error.details())
    found: dict[str, str] = {}
    for detail in rich.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            found.update({v.field: v.description for v in bad.field_violations})
    return found


async def expect(call: Any, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == code, err.value.details()
    return err.value


def raw_method(channel: grpc.aio.Channel, name: str) -> Any:
    """A unary method that sends bytes as they are (no client-side serialization)."""
    return channel.unary_unary(
        f"{SERVICE}/{name}", request_serializer=None, response_deserializer=None
    )


@pytest.fixture
async def channel(embedded: Embedded) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(embedded.grpc_target) as opened:
        yield opened


@pytest.fixture
async def http(embedded: Embedded) -> AsyncIterator[httpx.AsyncClient]:
    base = f"http://{embedded.settings.host}:{embedded.http_port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        yield client


def with_extra(value: dict[str, Any]) -> pb.GenerateMediaRequest:
    extra = struct_pb2.Struct()
    extra.update(value)
    return pb.GenerateMediaRequest(
        prompt="a red fox", parameters=job_pb2.GenerationParameters(extra_input=extra)
    )


# --- 1. non-finite numbers ------------------------------------------------------------------


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
async def test_non_finite_numbers_are_invalid_argument_by_path(stub: Stub, number: float) -> None:
    for request, field in [
        (with_extra({"guidance": number}), "parameters.extra_input.guidance"),
        (with_extra({"a": [1, {"b": number}]}), "parameters.extra_input.a[1].b"),
        (
            pb.GenerateMediaRequest(
                prompt="p", parameters=job_pb2.GenerationParameters(guidance_scale=number)
            ),
            "parameters.guidance_scale",
        ),
    ]:
        error = await expect(stub.GenerateMedia(request), grpc.StatusCode.INVALID_ARGUMENT)
        assert field in violations(error)
    assert (await stub.ListJobs(pb.ListJobsRequest())).total_size == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"prompt": "p", "parameters": {"extraInput": {"guidance": NaN}}}', "guidance"),
        ('{"prompt": "p", "parameters": {"extra_input": {"a": [1, -Infinity]}}}', "a[1]"),
        ('{"prompt": "p", "parameters": {"guidanceScale": Infinity}}', None),
    ],
)
async def test_json_nan_and_infinity_literals_are_400_naming_the_field(
    http: httpx.AsyncClient, body: str, field: str | None
) -> None:
    response = await http.post("/api/v1/jobs/generate", content=body, headers=JSON)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["code"] == 3
    (bad,) = [d for d in error["details"] if d["@type"] == BAD_REQUEST_TYPE]
    named = bad["fieldViolations"][0]["field"]
    expected = f"parameters.extra_input.{field}" if field else "parameters.guidance_scale"
    assert named == expected


async def test_non_finite_numbers_as_proto3_json_strings_are_400(http: httpx.AsyncClient) -> None:
    body = '{"prompt": "p", "parameters": {"guidanceScale": "NaN"}}'  # valid proto3 JSON
    response = await http.post("/api/v1/jobs/generate", content=body, headers=JSON)
    assert response.status_code == 400
    assert "parameters.guidance_scale" in response.text


# --- 2. page tokens -------------------------------------------------------------------------


def signed(body: bytes, key: str) -> str:
    signature = hmac.new(key.encode(), body, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(signature + body).decode().rstrip("=")


async def test_forged_and_tampered_page_tokens_are_invalid_argument(
    stub: Stub, embedded: Embedded
) -> None:
    key = embedded.settings.secret_key  # "a known key": the service's own
    first = await stub.GenerateMedia(pb.GenerateMediaRequest(prompt="one"))
    await stub.GenerateMedia(pb.GenerateMediaRequest(prompt="two"))
    page = await stub.ListJobs(pb.ListJobsRequest(page_size=1))
    assert page.next_page_token
    rest = await stub.ListJobs(pb.ListJobsRequest(page_size=1, page_token=page.next_page_token))
    assert [job.id for job in rest.jobs] == [first.job.id]

    cursor = Cursor(first.job.create_time.ToDatetime(), first.job.id, "", None)
    tokens = [
        encode_token(cursor, "mediagen-dev-secret"),  # the old public default key
        page.next_page_token[:-2] + ("AA" if page.next_page_token[-2:] != "AA" else "BB"),
        signed(b'["2026-01-01T00:00:00", "x", "", null]', key),  # naive date
        signed(b'[1, ["x"], {}, null]', key),  # wrong types
        signed(b'["2026-01-01T00:00:00+00:00", "' + b"x" * 300 + b'", "", null]', key),  # huge id
        signed(b'["2026-01-01T00:00:00+00:00", "x\\u0000", "", null]', key),  # NUL
        signed(b'["9999-99-99T00:00:00+00:00", "x", "", null]', key),  # no such date
        "A" * 100_000,
    ]
    for token in tokens:
        error = await expect(
            stub.ListJobs(pb.ListJobsRequest(page_token=token)), grpc.StatusCode.INVALID_ARGUMENT
        )
        assert list(violations(error)) == ["page_token"]


# --- 3. undecodable requests ----------------------------------------------------------------


async def test_undecodable_requests_are_invalid_argument(channel: grpc.aio.Channel) -> None:
    cases = [
        ("GetJob", b"\xff\xff\xff", None),  # not a message at all
        ("GetJob", length_delimited(1, b"\xff\xfe"), "id"),  # invalid UTF-8
        ("GenerateMedia", length_delimited(1, b"a \xc3 fox"), "prompt"),
        ("GenerateMedia", deep_extra_input(150), "parameters.extra_input"),  # too deep
        ("ListJobs", length_delimited(3, b"\x80"), "status"),
    ]
    for method, raw, field in cases:
        error = await expect(raw_method(channel, method)(raw), grpc.StatusCode.INVALID_ARGUMENT)
        assert "is not a valid mediagen.v1." in (error.details() or "")
        assert list(violations(error)) == ([field] if field else [])


async def test_undecodable_stream_requests_are_invalid_argument(
    channel: grpc.aio.Channel,
) -> None:
    watch: Any = channel.unary_stream(
        f"{SERVICE}/WatchJob", request_serializer=None, response_deserializer=None
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in watch(length_delimited(1, b"\xff")):
            pass
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(violations(err.value)) == ["id"]


async def test_deep_extra_input_within_protobufs_limit_is_checked_by_the_service(
    channel: grpc.aio.Channel,
) -> None:
    error = await expect(
        raw_method(channel, "GenerateMedia")(deep_extra_input(40)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    (field,) = violations(error)
    assert field.startswith("parameters.extra_input.a[0][0]")


@pytest.mark.parametrize(
    "body",
    [b'{"prompt": "a \xff fox"}', b"\xfe\xff\x00{", b'{"prompt": "\xed\xa0\x80"}'],
)
async def test_invalid_utf8_bodies_are_400(http: httpx.AsyncClient, body: bytes) -> None:
    response = await http.post("/api/v1/jobs/generate", content=body, headers=JSON)
    assert response.status_code == 400
    error = response.json()
    assert error["code"] == 3 and "UTF-8" in error["message"]


async def test_bodies_that_are_not_json_are_415_and_store_nothing(
    http: httpx.AsyncClient, stub: Stub
) -> None:
    # The cross-site form POST a browser sends without asking.
    form = await http.post(
        "/api/v1/jobs/generate",
        content=b'{"prompt": "csrf"}',
        headers={"Content-Type": "text/plain", "Origin": "https://evil.example"},
    )
    assert form.status_code == 415
    assert "access-control-allow-origin" not in form.headers
    assert (await stub.ListJobs(pb.ListJobsRequest())).total_size == 0


# --- 4. bounded errors ----------------------------------------------------------------------

HUGE = "x" * 10_000


async def test_huge_inputs_get_the_real_error_not_resource_exhausted(stub: Stub) -> None:
    await expect(stub.GetJob(pb.GetJobRequest(id=HUGE)), grpc.StatusCode.NOT_FOUND)
    await expect(stub.GetMedia(pb.GetMediaRequest(id="🦊" * 10_000)), grpc.StatusCode.NOT_FOUND)
    await expect(stub.CancelJob(pb.CancelJobRequest(id=HUGE)), grpc.StatusCode.NOT_FOUND)
    status = await expect(
        stub.ListJobs(pb.ListJobsRequest(status=HUGE)), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "use one of" in violations(status)["status"]  # the advice survives the cut
    labels = {HUGE + str(i): HUGE for i in range(40)}
    many = await expect(
        stub.GenerateMedia(pb.GenerateMediaRequest(prompt=HUGE, model=HUGE, labels=labels)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert {"prompt", "model"} <= set(violations(many))
    assert len(many.details() or "") <= 400


async def test_huge_ids_over_http_are_404(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/v1/jobs/status/" + "y" * 10_000)
    assert response.status_code == 404
    assert len(response.content) < 2000


async def test_oversized_requests_are_resource_exhausted_from_grpc(
    channel: grpc.aio.Channel, embedded: Embedded
) -> None:
    limit = embedded.settings.grpc_max_message_bytes
    raw = length_delimited(1, b"x" * (limit + 1))
    await expect(raw_method(channel, "GetJob")(raw), grpc.StatusCode.RESOURCE_EXHAUSTED)


# --- 6. the page-token key ------------------------------------------------------------------


async def test_serve_keeps_a_private_generated_key(tmp_path: Any) -> None:
    settings = embedded_settings(tmp_path / "data")
    first = Embedded(settings)
    await first.start()
    try:
        key = first.settings.secret_key
        async with grpc.aio.insecure_channel(first.grpc_target) as opened:
            stub = Stub(opened)
            for prompt in ("one", "two"):
                await stub.GenerateMedia(pb.GenerateMediaRequest(prompt=prompt))
            token = (await stub.ListJobs(pb.ListJobsRequest(page_size=1))).next_page_token
    finally:
        await first.stop()
    path = settings.secret_key_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) == 64 and key == path.read_text().strip()

    again = Embedded(settings)  # a restart keeps the key: old tokens still work
    await again.start()
    try:
        assert again.settings.secret_key == key
        async with grpc.aio.insecure_channel(again.grpc_target) as opened:
            rest = await Stub(opened).ListJobs(pb.ListJobsRequest(page_size=1, page_token=token))
        assert [job.prompt for job in rest.jobs] == ["one"]
    finally:
        await again.stop()

    other = embedded_settings(tmp_path / "other")
    elsewhere = Embedded(other)
    await elsewhere.start()
    try:
        assert elsewhere.settings.secret_key not in ("", key)
    finally:
        await elsewhere.stop()
