"""Replicate calls carry the request id of the work they are made for (x-request-id)."""

from __future__ import annotations

import httpx

from mediagen.logs.context import bound
from mediagen.providers.replicate import ReplicateProvider


async def test_each_api_call_carries_the_current_request_id() -> None:
    sent: list[str | None] = []

    def replicate(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get("x-request-id"))
        body = {"id": "p1", "status": "processing", "input": {}, "version": "v", "logs": ""}
        return httpx.Response(200, json=body)

    provider = ReplicateProvider(
        api_token="r8_test",
        base_url="http://replicate.test",
        transport=httpx.MockTransport(replicate),
    )
    try:
        with bound(request_id="owl-1"):
            assert (await provider.get("p1")).id == "p1"
            tagged = len(sent)
        await provider.get("p1")
    finally:
        await provider.close()
    assert tagged and set(sent[:tagged]) == {"owl-1"}
    assert set(sent[tagged:]) == {None}  # outside any request: no header
