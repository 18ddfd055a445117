"""Headers to metadata, error bodies, JSON bodies, stream framing: pure, table-driven."""

from __future__ import annotations

import json
from typing import Any

import google.api.http_pb2 as http_pb2
import google.rpc.error_details_pb2 as error_details_pb2
import google.rpc.status_pb2 as status_pb2
import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2, json_format

from mediagen.errors import HTTP_STATUS
from mediagen.gateway import errors, jsonmap, metadata, rules, streaming
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as svc


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([("authorization", "Bearer t")], [("authorization", "Bearer t")]),
        ([("x-request-id", "r-1")], [("x-request-id", "r-1")]),
        ([("grpc-metadata-tenant", "acme")], [("tenant", "acme")]),
        ([("grpc-metadata-trace-bin", "AAE=")], [("trace-bin", b"\x00\x01")]),
        ([("grpc-metadata-trace-bin", "!!")], []),  # not base64: dropped
        ([("grpc-metadata-bad key", "x")], []),  # not a valid key
        ([("grpc-metadata-grpc-status", "0")], []),  # reserved
        ([("grpc-metadata-x", "caf\u00e9")], []),  # not ASCII
        ([("user-agent", "curl/8")], [("grpcgateway-user-agent", "curl/8")]),
        ([("accept", "text/event-stream")], [("grpcgateway-accept", "text/event-stream")]),
        ([("x-custom", "dropped")], []),
        (
            [("host", "api.example"), ("x-forwarded-for", "10.0.0.1")],
            [
                ("grpcgateway-host", "api.example"),
                ("x-forwarded-host", "api.example"),
                ("x-forwarded-for", "10.0.0.1, 127.0.0.1"),
            ],
        ),
    ],
)
def test_incoming_metadata(headers, expected):
    got = metadata.incoming_metadata(headers, peer_host="127.0.0.1")
    got = [kv for kv in got if kv[0] != "x-forwarded-for" or "x-forwarded-for" in dict(headers)]
    assert got == expected


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1S", 1.0), ("250m", 0.25), ("2M", 120.0), ("1H", 3600.0), ("5u", 5e-6), ("9n", 9e-9)],
)
def test_grpc_timeout(value, seconds):
    assert metadata.parse_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "1", "1s", "S", "123456789S", "-1S", "1.5S"])
def test_grpc_timeout_rejects(value):
    with pytest.raises(metadata.BadHeader):
        metadata.parse_timeout(value)


def test_outgoing_headers():
    got = metadata.outgoing_headers([("x-a", "1"), ("x-b-bin", b"\x00"), ("x-c", "caf\u00e9")])
    assert got == [("Grpc-Metadata-x-a", "1"), ("Grpc-Metadata-x-b-bin", "AA==")]


def _packed(message) -> any_pb2.Any:
    holder = any_pb2.Any()
    holder.Pack(message)
    return holder


def test_every_code_has_an_http_status():
    assert {c for c in grpc.StatusCode} == set(HTTP_STATUS)
    for code in grpc.StatusCode:
        status = status_pb2.Status(code=code.value[0])
        assert errors.http_status_of(status) == HTTP_STATUS[code]
    assert errors.http_status_of(status_pb2.Status(code=99)) == 500


@pytest.mark.parametrize(
    ("code", "delay", "expected"),
    [
        (grpc.StatusCode.RESOURCE_EXHAUSTED, duration_pb2.Duration(seconds=3), "3"),
        (grpc.StatusCode.UNAVAILABLE, duration_pb2.Duration(nanos=200_000_000), "1"),
        (grpc.StatusCode.UNAVAILABLE, duration_pb2.Duration(seconds=2, nanos=1), "3"),
        (grpc.StatusCode.UNAVAILABLE, duration_pb2.Duration(), "0"),
        (grpc.StatusCode.INTERNAL, duration_pb2.Duration(seconds=3), None),  # only 429/503
        (grpc.StatusCode.UNAVAILABLE, None, None),
    ],
)
def test_retry_after(code, delay, expected):
    status = status_pb2.Status(code=code.value[0])
    if delay is not None:
        status.details.append(_packed(error_details_pb2.RetryInfo(retry_delay=delay)))
    assert errors.error_headers(status).get("retry-after") == expected


def test_status_body_renders_known_and_unknown_details():
    unknown = any_pb2.Any(type_url="type.googleapis.com/acme.Secret", value=b"\x01\x02")
    info = error_details_pb2.ErrorInfo(reason="R", domain="d", metadata={"k": "v"})
    status = status_pb2.Status(code=5, message="gone", details=[_packed(info), unknown])
    assert errors.status_to_obj(status) == {
        "code": 5,
        "message": "gone",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "R",
                "domain": "d",
                "metadata": {"k": "v"},
            },
            {"@type": "type.googleapis.com/acme.Secret", "value": "AQI="},
        ],
    }
    empty = {"code": 3, "message": "", "details": []}
    assert errors.status_to_obj(status_pb2.Status(code=3)) == empty


SEED_BODY = (
    b'{"prompt": "A beautiful sunset over mountains", "parameters": {"width": 1024, '
    b'"height": 1024, "num_inference_steps": 50, "guidance_scale": 7.5}}'
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            SEED_BODY,
            {
                "prompt": "A beautiful sunset over mountains",
                "parameters": {
                    "width": 1024,
                    "height": 1024,
                    "numInferenceSteps": 50,
                    "guidanceScale": 7.5,
                },
            },
        ),
        (
            b'{"prompt": "x", "parameters": {"numInferenceSteps": 5, "outputFormat": 2}}',
            {
                "prompt": "x",
                "parameters": {"numInferenceSteps": 5, "outputFormat": "OUTPUT_FORMAT_JPEG"},
            },
        ),
        (b'{"prompt": "x", "unknown": {"deep": 1}}', {"prompt": "x"}),
        # Unknown enum names are dropped like unknown fields (Go's DiscardUnknown does too).
        (
            b'{"prompt": "x", "parameters": {"outputFormat": "GIF"}}',
            {"prompt": "x", "parameters": {}},
        ),
        (
            b'{"labels": {"a": "b"}, "parameters": {"seed": "42", "extraInput": {"k": [1]}}}',
            {"labels": {"a": "b"}, "parameters": {"seed": "42", "extraInput": {"k": [1.0]}}},
        ),
        (b"", {}),
        (b"  \n", {}),
    ],
)
def test_parse_body(raw, expected):
    request = svc.GenerateMediaRequest()
    jsonmap.parse_body(raw, request, "*")
    assert json_format.MessageToDict(request) == expected


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"[]",
        b'"prompt"',
        b"\xff\xfe",
        b'{"prompt": 5}',
        b'{"parameters": []}',
        b'{"parameters": {"width": "wide"}}',
        b'{"parameters": {"width": 1e40}}',
        b'{"labels": []}',
        b'{"parameters": {"num_inference_steps": 2, "numInferenceSteps": 3}}',
        b"[" * 100_000,
    ],
)
def test_parse_body_rejects(raw):
    with pytest.raises(jsonmap.BadBody):
        jsonmap.parse_body(raw, svc.GenerateMediaRequest(), "*")


def test_parse_body_field():
    request = svc.GenerateMediaRequest()
    jsonmap.parse_body(b'{"width": 64, "guidance_scale": 2}', request, "parameters")
    assert request.parameters.width == 64
    assert request.parameters.guidance_scale == 2


def test_response_rendering_emits_unpopulated_fields():
    response = svc.GetJobResponse(job=job_pb2.Job(id="j"))
    body = jsonmap.response_to_obj(response, "job")
    assert isinstance(body, dict)
    assert body["id"] == "j"
    assert body["status"] == "JOB_STATE_UNSPECIFIED"
    assert body["progress"] == 0
    assert body["media"] == []
    assert body["labels"] == {}
    assert body["cancelRequested"] is False
    assert "createTime" not in body  # an unset message is left out (Go writes null)
    assert "error" not in body
    assert jsonmap.response_to_obj(svc.GetJobResponse(), "job") == jsonmap.message_to_obj(
        job_pb2.Job()
    )
    whole = jsonmap.response_to_obj(svc.ListJobsResponse(total_size=2), "")
    assert whole == {"jobs": [], "nextPageToken": "", "totalSize": 2}


def test_frames():
    assert streaming.ndjson_frame("result", {"a": 1}) == b'{"result":{"a":1}}\n'
    assert streaming.sse_frame({"a": 1}, event_id="7") == b'id: 7\ndata: {"a":1}\n\n'
    assert streaming.sse_frame({"code": 5}, event="error") == b'event: error\ndata: {"code":5}\n\n'
    assert json.loads(streaming.SSE_END.split(b"data: ")[1]) == {}


def _rule(**fields: Any) -> http_pb2.HttpRule:
    return http_pb2.HttpRule(**fields)


GENERATE = svc.DESCRIPTOR.services_by_name["MediaGenerationService"].methods_by_name[
    "GenerateMedia"
]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (_rule(get="/v1/{nope}"), "is not a request field"),
        (_rule(get="/v1/{labels}"), "repeated or a map"),
        (_rule(get="/v1/{prompt.x}"), "is not a request field"),
        (_rule(post="/v1/x", body="nope"), "body 'nope'"),
        (_rule(get="/v1/x", response_body="nope"), "response_body 'nope'"),
        (_rule(), "no pattern"),
        (_rule(get="v1/x"), "must start with '/'"),
    ],
)
def test_broken_rules_fail_at_build_time(rule, message):
    with pytest.raises(rules.RuleError, match=message):
        rules._binding(GENERATE, rule, 0)


def test_rule_shapes():
    custom = rules._binding(GENERATE, _rule(custom={"kind": "head", "path": "/v1/x"}), 0)
    assert custom.http_method == "HEAD"
    nested = rules._binding(GENERATE, _rule(put="/v1/{parameters.width}", body="*"), 2)
    assert (nested.path_fields, nested.body, nested.index) == (("parameters.width",), "*", 2)
    bindings = rules.bindings_for(svc.DESCRIPTOR.services_by_name["MediaGenerationService"])
    assert [(b.http_method, b.template.text) for b in bindings] == [
        ("POST", "/api/v1/jobs/generate"),
        ("GET", "/api/v1/jobs/status/{id}"),
        ("GET", "/api/v1/jobs/{id}"),
        ("GET", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs/{id}:watch"),
        ("GET", "/api/v1/media/{id}"),
        ("POST", "/api/v1/jobs/{id}:cancel"),
    ]
