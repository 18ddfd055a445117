"""The emulator's per-account rate limits: past a per-minute budget (creates, or the other
calls) a call gets Replicate's 429 with ``retry_after`` and ``Retry-After``, and does nothing."""

from __future__ import annotations

import httpx

from mediagen.emulator import RunningEmulator
from mediagen.providers.rates import Rates
from tests.emulator.helpers import SDXL
from tests.fixtures.emulator import EmulatorFactory, sync_probe, wait_until

#: 60 creates and 120 other calls a minute, 2 s of each at once: bursts of 2 and 4.
TINY = Rates(creates_per_min=60, requests_per_min=120, burst_s=2)


def _client(running: RunningEmulator, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=running.base_url, headers={"Authorization": f"Bearer {token}"}
    )


async def _create(http: httpx.AsyncClient) -> httpx.Response:
    return await http.post(f"/v1/models/{SDXL}/predictions", json={"input": {"prompt": "a cat"}})


async def test_creates_past_the_budget_get_429_with_retry_after(
    emulator_factory: EmulatorFactory,
) -> None:
    running = await emulator_factory(limits=TINY)
    async with _client(running, "r8_a") as http:
        made = [await _create(http) for _ in range(2)]
        refused = await _create(http)

        assert [r.status_code for r in made] == [201, 201]
        assert refused.status_code == 429
        body = refused.json()
        assert body["status"] == 429
        assert body["detail"].startswith("Request was throttled. Your rate limit resets in ~")
        assert body["retry_after"] == 1  # one create a second: the next token within 1 s
        assert refused.headers["retry-after"] == "1"
        # Refused calls do nothing; the other budget is not spent by creates.
        assert running.emulator.stats_json()["predictions"] == 2
        prediction_id = made[0].json()["id"]
        assert (await http.get(f"/v1/predictions/{prediction_id}")).status_code == 200

    stats = running.emulator.stats_json()
    assert stats["throttled"] == {"create": 1, "other": 0}
    assert stats["requests"]["create"] == 3  # every arrival is counted, refused ones too


async def test_other_calls_have_their_own_budget_per_account(
    emulator_factory: EmulatorFactory,
) -> None:
    running = await emulator_factory(limits=TINY)
    async with _client(running, "r8_a") as first, _client(running, "r8_b") as second:
        created = await _create(first)
        prediction_id = created.json()["id"]
        answers = [
            (await first.get(f"/v1/predictions/{prediction_id}")).status_code for _ in range(5)
        ]
        # Another account (token) is not limited by the first one's calls.
        other = await second.get("/v1/predictions")
        # Output files come from the delivery host: never counted against the API budget.
        done = await wait_until(
            sync_probe(lambda: running.emulator.render(running.emulator.get(prediction_id), "")),
            lambda data: data["status"] == "succeeded",
        )
        file = await first.get(done["output"][0])

    assert answers == [200, 200, 200, 200, 429]
    assert other.status_code == 200
    assert file.status_code == 200 and file.content
    assert running.emulator.stats_json()["throttled"] == {"create": 0, "other": 1}


async def test_limits_are_set_and_read_through_the_control_api(
    emulator_factory: EmulatorFactory,
) -> None:
    running = await emulator_factory()
    async with _client(running, "r8_a") as http:
        assert (await http.get("/_emulator/limits")).json() == {
            "creates_per_min": 600.0,
            "requests_per_min": 3000.0,
            "burst_s": 10.0,
        }  # Replicate's, with 10 s bursts
        changed = await http.put("/_emulator/limits", json={"creates_per_min": 30, "burst_s": 2})
        assert changed.json()["creates_per_min"] == 30
        assert [(await _create(http)).status_code for _ in range(2)] == [201, 429]
        assert (await http.put("/_emulator/limits", json={"per_hour": 1})).status_code == 400
        assert (await http.put("/_emulator/limits", json={"burst_s": -1})).status_code == 400
        # 0 turns a budget off.
        await http.put("/_emulator/limits", json={"creates_per_min": 0})
        assert [(await _create(http)).status_code for _ in range(5)] == [201] * 5
