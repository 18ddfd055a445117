"""The emulator's completion webhooks, as a receiver sees them: signed, sent once the
prediction ends, retried while the receiver fails, and only to loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
import pytest_asyncio
from replicate.webhook import Webhooks, WebhookSigningSecret
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from mediagen.emulator import RunningEmulator, Webhook, WebhookAction
from mediagen.emulator.webhooks import deliverable
from mediagen.http_server import start_http_server
from tests.emulator.helpers import SDXL
from tests.fixtures.emulator import EmulatorFactory, wait_until


@dataclass
class Receiver:
    """Records each POST; answers the next codes in ``answers`` (then 200)."""

    url: str = ""
    answers: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        self.received.append((dict(request.headers), await request.body()))
        status = self.answers.pop(0) if self.answers else 200
        await Response(status_code=status)(scope, receive, send)

    async def count(self) -> int:
        return len(self.received)


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recording = Receiver()
    server = await start_http_server(recording, "127.0.0.1", 0, name="receiver", grace_s=0)
    recording.url = f"http://{server.host_port}/hook?job=j-1&attempt=1"
    try:
        yield recording
    finally:
        await server.stop()


@pytest_asyncio.fixture
async def quick(emulator_factory: EmulatorFactory) -> RunningEmulator:
    """Retries after 0.05 s, then 0.1 s."""
    return await emulator_factory(webhook_retry_delays_s=(0.05, 0.1))


async def create(emulator: RunningEmulator, hook: str, **extra: object) -> dict[str, object]:
    body = {"input": {"prompt": "a fox"}, "webhook": hook, **extra}
    async with httpx.AsyncClient(base_url=emulator.base_url) as http:
        response = await http.post(f"/v1/models/{SDXL}/predictions", json=body)
        return dict(response.json())


async def test_the_completion_webhook_is_the_final_prediction_signed_with_the_account_secret(
    quick: RunningEmulator, receiver: Receiver
) -> None:
    created = await create(quick, receiver.url, webhook_events_filter=["completed"])
    await wait_until(receiver.count, lambda n: n == 1)

    headers, body = receiver.received[0]
    async with httpx.AsyncClient(base_url=quick.base_url) as http:
        secret = (await http.get("/v1/webhooks/default/secret")).json()["key"]
        final = (await http.get(f"/v1/predictions/{created['id']}")).json()
    # The replicate client's own validator accepts it (it returns None, raising on failure).
    Webhooks.validate(headers=headers, body=body.decode(), secret=WebhookSigningSecret(key=secret))
    assert httpx.Response(200, content=body).json() == final
    assert final["status"] == "succeeded"
    assert quick.emulator.stats_json()["webhooks"] == {"delivered": 1}


async def test_a_failing_receiver_gets_the_same_message_again_until_it_answers_2xx(
    quick: RunningEmulator, receiver: Receiver
) -> None:
    receiver.answers = [500, 404]
    await create(quick, receiver.url)
    await wait_until(receiver.count, lambda n: n == 3)

    ids = {headers["webhook-id"] for headers, _ in receiver.received}
    assert len(ids) == 1
    assert quick.emulator.stats_json()["webhooks"] == {"failed": 2, "delivered": 1}


async def test_a_receiver_that_never_answers_2xx_is_given_up_on(
    quick: RunningEmulator, receiver: Receiver
) -> None:
    receiver.answers = [503, 503, 503]
    await create(quick, receiver.url)
    await wait_until(lambda: asyncio.sleep(0, quick.emulator.stats_json()["webhooks"]), bool)
    await wait_until(receiver.count, lambda n: n == 3)
    await wait_until(
        lambda: asyncio.sleep(0, quick.emulator.stats_json()["webhooks"]),
        lambda counts: counts.get("given_up") == 1,
    )
    assert len(receiver.received) == 3  # the first try and two retries


@pytest.mark.parametrize(
    ("action", "deliveries"), [(WebhookAction.DUPLICATE, 2), (WebhookAction.DROP, 0)]
)
async def test_webhook_faults_duplicate_or_drop_the_delivery(
    quick: RunningEmulator, receiver: Receiver, action: WebhookAction, deliveries: int
) -> None:
    quick.emulator.inject(Webhook(action=action))
    created = await create(quick, receiver.url)
    await wait_until(
        lambda: asyncio.sleep(0, quick.emulator.stats_json()["webhooks"]),
        lambda counts: sum(counts.values()) == max(deliveries, 1),
    )
    assert len(receiver.received) == deliveries
    assert len({h["webhook-id"] for h, _ in receiver.received}) == min(deliveries, 1)
    async with httpx.AsyncClient(base_url=quick.base_url) as http:
        final = (await http.get(f"/v1/predictions/{created['id']}")).json()
    assert final["status"] == "succeeded"


async def test_no_webhook_without_the_completed_event_or_to_other_hosts(
    quick: RunningEmulator, receiver: Receiver
) -> None:
    await create(quick, receiver.url, webhook_events_filter=["start"])
    await create(quick, "http://media.example.com/hook?job=j&attempt=1")
    await create(quick, receiver.url)  # sent last: once it arrives, the others had their turn
    await wait_until(receiver.count, lambda n: n == 1)
    assert quick.emulator.stats_json()["webhooks"] == {"refused_host": 1, "delivered": 1}


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:8080/webhooks/replicate", True),
        ("https://localhost/hook", True),
        ("http://[::1]:9/hook", True),
        ("http://127.8.9.10/hook", True),
        ("http://10.0.0.1/hook", False),
        ("http://169.254.169.254/latest/meta-data", False),
        ("https://media.example.com/hook", False),  # names are never resolved
        ("ftp://127.0.0.1/hook", False),
        ("http:///no-host", False),
        ("http://[::1/broken", False),
    ],
)
def test_only_loopback_receivers_are_deliverable(url: str, allowed: bool) -> None:
    assert deliverable(url, ()) is allowed


def test_listed_hosts_are_deliverable_by_exact_name() -> None:
    assert deliverable("https://hooks.test/x", ("hooks.test",))
    assert not deliverable("https://evil.hooks.test/x", ("hooks.test",))
