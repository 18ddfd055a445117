"""Generic routing over real HTTP and gRPC, on the test proto's service.

Nothing in the gateway knows this service: every route here comes from its ``google.api.http``
rules, which proves that an annotated RPC appears over HTTP with no gateway change.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture
async def http(echo_stack):
    async with httpx.AsyncClient(base_url=echo_stack.http_url, timeout=10) as client:
        yield client


async def test_get_binds_path_and_query(http):
    params = [
        ("number", "5"),
        ("big", "-12"),
        ("nested.label", "x"),
        ("nested.deeper.flag", "true"),
        ("colors", "COLOR_RED"),
        ("colors", "2"),
        ("color", "1"),
        ("tags", "a"),
        ("tags", "b"),
        ("when", "2026-01-02T03:04:05Z"),
        ("wait", "1h30m"),
        ("data", '{"k": [1, true]}'),
        ("maybe", "0"),
        ("labels[team]", "web"),
        ("maybeCount", "7"),
        ("unknown", "ignored"),
        ("id", "not-the-path"),
    ]
    response = await http.get("/v1/echo/abc", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    got = response.json()["request"]
    assert got["id"] == "abc"  # the path wins over the query
    assert got["number"] == 5
    assert got["big"] == "-12"
    assert got["nested"] == {"label": "x", "count": 0, "deeper": {"flag": True}}
    assert got["colors"] == ["COLOR_RED", "COLOR_BLUE"]
    assert got["color"] == "COLOR_RED"
    assert got["tags"] == ["a", "b"]
    assert got["when"] == "2026-01-02T03:04:05Z"
    assert got["wait"] == "5400s"
    assert got["data"] == {"k": [1, True]}
    assert got["maybe"] == "0"
    assert got["labels"] == {"team": "web"}
    assert got["maybeCount"] == 7
    # Unpopulated fields are written, as grpc-gateway's EmitUnpopulated.
    assert got["ratio"] == 0 and got["enabled"] is False and got["many"] == []


async def test_post_body_star_ignores_query_and_path_wins(http):
    body = {"id": "from-body", "number": 3, "nested": {"label": "y"}, "extra": {"x": 1}}
    response = await http.post("/v1/echo/abc", params={"ratio": "2.5"}, json=body)
    assert response.status_code == 200, response.text
    got = response.json()["request"]
    assert (got["id"], got["number"], got["nested"]["label"], got["ratio"]) == ("abc", 3, "y", 0)


async def test_put_body_field_and_query_for_the_rest(http):
    note = {"text": "hello", "author": "me"}
    response = await http.put("/v1/echo/abc/note", params={"number": "4"}, json=note)
    assert response.status_code == 200, response.text
    got = response.json()["request"]
    assert got["note"] == note
    assert got["number"] == 4


async def test_nested_path_variable(http):
    response = await http.patch("/v1/echo/lbl:relabel", json={"nested": {"count": 2}})
    assert response.status_code == 200, response.text
    assert response.json()["request"]["nested"] == {"label": "lbl", "count": 2}


async def test_response_body_and_multi_segment_variable(http):
    response = await http.get("/v1/shelves/s1/items/i1")
    assert response.status_code == 200
    assert response.json() == {"name": "shelves/s1/items/i1", "size": "1099511627776"}


async def test_double_wildcard_keeps_encoded_slashes(http):
    response = await http.get("/v1/paths/a/b%2Fc/d%20e:read")
    assert response.json() == {"path": "a/b%2Fc/d e"}


async def test_unannotated_method_is_not_routed(http):
    response = await http.post("/gwtest.v1.EchoService/Hidden", json={})
    assert response.status_code == 404
    assert response.json() == {"code": 5, "message": "Not Found", "details": []}


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "field"),
    [
        ("GET", "/v1/echo/abc", {"params": {"number": "x"}}, "number"),
        ("GET", "/v1/echo/abc", {"params": {"color": "PINK"}}, "color"),
        ("GET", "/v1/echo/abc", {"params": {"when": "soon"}}, "when"),
        ("GET", "/v1/echo/abc", {"params": [("number", "1"), ("number", "2")]}, "number"),
        ("GET", "/v1/echo/%FF", {}, None),
        ("GET", "/v1/echo/abc?number=%FF", {}, None),
        ("POST", "/v1/echo/abc", {"content": b"{not json", "headers": JSON}, None),
        ("POST", "/v1/echo/abc", {"content": b'{"number": "many"}', "headers": JSON}, None),
        ("POST", "/v1/echo/abc", {"content": b'{"nested": [1]}', "headers": JSON}, None),
        ("GET", "/v1/echo/abc", {"headers": {"Grpc-Timeout": "soon"}}, None),
    ],
)
async def test_bad_input_is_400(http, method, path, kwargs, field):
    response = await http.request(method, path, **kwargs)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == 3
    if field:
        violations = body["details"][0]["fieldViolations"]
        assert violations[0]["field"] == field


async def test_wrong_method_is_405(http):
    response = await http.delete("/v1/echo/abc")
    assert response.status_code == 405
    assert response.json() == {"code": 12, "message": "Method Not Allowed", "details": []}
    assert response.headers["allow"] == "GET, POST"


async def test_headers_become_metadata_and_back(http):
    headers = {
        "Authorization": "Bearer t0k",
        "X-Request-Id": "req-1",
        "Grpc-Metadata-Tenant": "acme",
        "Grpc-Metadata-Trace-Bin": "AAE=",
        "X-Not-Forwarded": "no",
        "Grpc-Timeout": "5S",
    }
    response = await http.get("/v1/echo/abc", headers=headers)
    assert response.status_code == 200
    seen = response.json()["metadata"]
    assert "authorization=Bearer t0k" in seen
    assert "x-request-id=req-1" in seen
    assert "tenant=acme" in seen
    assert "trace-bin=b'\\x00\\x01'" in seen
    assert not any(item.startswith("x-not-forwarded") for item in seen)
    assert response.headers["grpc-metadata-x-echo"] == "yes"
    assert response.headers["grpc-metadata-x-echo-bin"] == "AAE="


async def test_grpc_timeout_becomes_the_deadline(http):
    response = await http.get("/v1/echo/abc?number=-1", headers={"Grpc-Timeout": "100m"})
    assert response.status_code == 504
    assert response.json()["code"] == 4


async def test_client_disconnect_cancels_a_unary_call(http, echo_stack):
    servicer = echo_stack.servicers[0][1]
    servicer.echo_cancelled.clear()
    with pytest.raises(httpx.ReadTimeout):
        await http.get("/v1/echo/abc?number=-1", timeout=0.3)
    await asyncio.wait_for(servicer.echo_cancelled.wait(), timeout=5)


async def _lines(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) async for line in response.aiter_lines() if line]


async def test_stream_ndjson(http):
    async with http.stream("GET", "/v1/counters/c:count", params={"count": 3}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        lines = await _lines(response)
    assert lines == [{"result": {"sequence": str(i), "text": f"c-{i}"}} for i in (1, 2, 3)]


async def test_stream_error_after_first_message_is_a_last_line(http):
    params = {"count": 2, "fail_code": 14}
    async with http.stream("GET", "/v1/counters/c:count", params=params) as response:
        assert response.status_code == 200
        lines = await _lines(response)
    assert [line["result"]["sequence"] for line in lines[:2]] == ["1", "2"]
    assert lines[2]["error"]["code"] == 14
    assert lines[2]["error"]["message"] == "counter failed"
    assert lines[2]["error"]["details"][0]["reason"] == "TEST_UNAVAILABLE"


async def test_stream_error_before_first_message_is_an_http_error(http):
    params = {"count": 1, "after_sequence": 5, "fail_code": 14}
    response = await http.get("/v1/counters/c:count", params=params)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "3"
    assert response.json()["code"] == 14


async def test_stream_sse_with_last_event_id(http):
    headers = {"Accept": "text/event-stream", "Last-Event-ID": "2"}
    async with http.stream("GET", "/v1/counters/c:count?count=4", headers=headers) as response:
        assert response.headers["content-type"] == "text/event-stream"
        text = (await response.aread()).decode()
    events = [block for block in text.split("\n\n") if block and not block.startswith(":")]
    assert events == [
        'id: 3\ndata: {"sequence":"3","text":"c-3"}',
        'id: 4\ndata: {"sequence":"4","text":"c-4"}',
        "event: end\ndata: {}",
    ]


async def test_client_disconnect_cancels_the_upstream_call(http, echo_stack):
    servicer = echo_stack.servicers[0][1]
    servicer.count_cancelled.clear()
    async with http.stream("GET", "/v1/counters/forever:count") as response:
        lines = response.aiter_lines()
        assert json.loads(await anext(lines))["result"]["sequence"] == "1"
        assert json.loads(await anext(lines))["result"]["sequence"] == "2"
    # Leaving the block closed the connection mid-stream.
    await asyncio.wait_for(servicer.count_cancelled.wait(), timeout=5)


async def test_openapi_of_the_test_service(http, echo_protos):
    from openapi_spec_validator import validate

    document = (await http.get("/openapi.json")).json()
    validate(document)
    paths = document["paths"]
    assert set(paths) >= {
        "/v1/echo/{id}",
        "/v1/echo/{id}/note",
        "/v1/echo/{nested.label}:relabel",
        "/v1/{name}",
        "/v1/paths/{path}:read",
        "/v1/counters/{name}:count",
    }
    assert set(paths["/v1/echo/{id}"]) == {"get", "post"}
    get = paths["/v1/echo/{id}"]["get"]
    assert get["summary"] == "Echoes the request as the server received it."
    names = {p["name"] for p in get["parameters"]}
    assert {"id", "number", "nested.label", "nested.deeper.flag", "colors", "when"} <= names
    assert not names & {"many.label", "labels", "note"}  # no repeated messages, maps or bodies
    item = paths["/v1/{name}"]["get"]["parameters"][0]
    assert item["schema"]["pattern"] == "^shelves/[^/]+/items/[^/]+$"
    put_body = paths["/v1/echo/{id}/note"]["put"]["requestBody"]["content"]["application/json"]
    assert put_body["schema"] == {"$ref": "#/components/schemas/gwtest.v1.Note"}
    schemas = document["components"]["schemas"]
    request = schemas["gwtest.v1.EchoRequest"]
    assert request["required"] == ["id"]
    assert request["properties"]["serverNote"]["readOnly"] is True
    assert request["properties"]["big"]["type"] == "string"
    assert request["properties"]["nested"]["allOf"] == [
        {"$ref": "#/components/schemas/gwtest.v1.Nested"}
    ]
    assert schemas["gwtest.v1.Color"]["enum"] == ["COLOR_UNSPECIFIED", "COLOR_RED", "COLOR_BLUE"]
    stream = paths["/v1/counters/{name}:count"]["get"]["responses"]["200"]["content"]
    assert stream["application/x-ndjson"]["schema"]["title"] == "Stream result of gwtest.v1.Tick"
    assert "text/event-stream" in stream
