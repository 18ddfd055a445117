"""What recovery by marker relies on: the emulator keeps ``webhook`` as Replicate does and can
lose a create's answer after the create took effect."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from mediagen.emulator import Delay, RunningEmulator
from mediagen.emulator.faults import Route
from tests.emulator.helpers import SDXL
from tests.fixtures.emulator import wait_until

HOOK = "https://media.example.com/webhooks/replicate?job=j-1&attempt=2"


async def test_webhook_is_stored_and_returned_by_create_get_and_list(
    http: httpx.AsyncClient,
) -> None:
    body = {"input": {"prompt": "a fox"}, "webhook": HOOK, "webhook_events_filter": ["completed"]}
    created = (await http.post(f"/v1/models/{SDXL}/predictions", json=body)).json()
    await http.post(f"/v1/models/{SDXL}/predictions", json={"input": {"prompt": "a fox"}})

    got = (await http.get(f"/v1/predictions/{created['id']}")).json()
    listed = (await http.get("/v1/predictions")).json()["results"]

    assert (created["webhook"], got["webhook"]) == (HOOK, HOOK)
    assert got["webhook_events_filter"] == ["completed"]
    assert [p["webhook"] for p in listed] == [None, HOOK]  # newest first


async def test_a_non_string_webhook_is_refused(http: httpx.AsyncClient) -> None:
    body = {"input": {"prompt": "a fox"}, "webhook": 42}
    response = await http.post(f"/v1/models/{SDXL}/predictions", json=body)
    assert response.status_code == 422


@pytest.mark.parametrize("after", [True, False], ids=["answer-late", "create-late"])
async def test_a_create_delayed_past_the_clients_deadline_still_happens(
    emulator: RunningEmulator, after: bool
) -> None:
    # after=True: made at once, only the answer is late; False: the create itself happens late.
    emulator.emulator.inject(Delay(route=Route.CREATE, delay_s=0.6, after=after))
    body = {"input": {"prompt": "a late fox"}}
    async with httpx.AsyncClient(base_url=emulator.base_url, timeout=0.2) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            await impatient.post(f"/v1/models/{SDXL}/predictions", json=body)

    made_at_once = len(emulator.emulator.predictions)
    made = await wait_until(lambda: asyncio.sleep(0, len(emulator.emulator.predictions)), bool)

    assert (made_at_once, made) == (1 if after else 0, 1)
