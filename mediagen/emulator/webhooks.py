"""Completion webhooks, sent as Replicate sends them (reference/replicate.md §1.8).

When a prediction that asked for ``completed`` (or gave no filter) ends, its JSON (the body a GET
would answer) is POSTed to its ``webhook`` URL, signed the Standard Webhooks way: ``webhook-id``
(the same on every retry), ``webhook-timestamp`` (Unix seconds) and ``webhook-signature``
(``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` keyed by the account's ``whsec_`` secret).
A connection error or a non-2xx answer is retried after each of ``webhook_retry_delays_s``;
redirects are not followed. Only ``completed`` is emulated: the service asks for nothing else.

Deliveries go only to loopback addresses and the exact host names in ``webhook_hosts``: names
are never resolved, so the emulator cannot be pointed at another machine.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import secrets
import time
from collections import Counter
from collections.abc import Callable
from hashlib import sha256
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlsplit

import httpx

from mediagen.emulator.config import EmulatorConfig
from mediagen.emulator.faults import FaultPlan, Webhook, WebhookAction
from mediagen.emulator.prediction import EmulatedPrediction

Render = Callable[[EmulatedPrediction, str], dict[str, Any]]


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one delivery."""
    key = base64.b64decode(secret.split("_", 1)[1])
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, webhook_id: str, body: bytes, *, timestamp: int) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, webhook_id, timestamp, body),
    }


def deliverable(url: str, hosts: tuple[str, ...]) -> bool:
    """Whether the emulator may POST to ``url``: http(s) to a loopback address or a listed
    host name."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not host:
        return False
    if host == "localhost" or host in hosts:
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


class WebhookSender:
    """Sends each completion webhook from a task of its own; ``counts`` says what happened
    (``delivered``, ``failed`` tries, ``given_up``, ``dropped``, ``refused_host``)."""

    def __init__(self, config: EmulatorConfig, faults: FaultPlan, render: Render) -> None:
        self._config = config
        self._faults = faults
        self._render = render
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self.counts: Counter[str] = Counter()

    def schedule(self, prediction: EmulatedPrediction, base_url: str) -> None:
        """Send ``prediction``'s completion webhook once it ends, if it asked for one."""
        url = prediction.webhook
        events = prediction.webhook_events_filter
        if url is None or (events is not None and "completed" not in events):
            return
        if not deliverable(url, self._config.webhook_hosts):
            self.counts["refused_host"] += 1
            return
        fault = self._faults.take_webhook(prediction.params.prompt)
        task = asyncio.create_task(self._send(prediction, url, base_url, fault))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forget(self) -> None:
        """Cancel every webhook not sent yet and reset the counts."""
        for task in self._tasks:
            task.cancel()
        self.counts.clear()

    async def close(self) -> None:
        """Cancel every webhook not sent yet; close connections."""
        tasks = list(self._tasks)
        self.forget()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _send(
        self, prediction: EmulatedPrediction, url: str, base_url: str, fault: Webhook | None
    ) -> None:
        await _until_done(prediction)
        action = fault.action if fault is not None else None
        if action is WebhookAction.DROP:
            self.counts["dropped"] += 1
            return
        if fault is not None and action is WebhookAction.DELAY:
            await asyncio.sleep(fault.delay_s)
        body = json.dumps(self._render(prediction, base_url)).encode()
        webhook_id = f"msg_{secrets.token_hex(12)}"
        for _ in range(2 if action is WebhookAction.DUPLICATE else 1):
            await self._deliver(url, webhook_id, body)

    async def _deliver(self, url: str, webhook_id: str, body: bytes) -> None:
        for delay_s in (0.0, *self._config.webhook_retry_delays_s):
            if delay_s:
                await asyncio.sleep(delay_s)
            if await self._post(url, webhook_id, body):
                self.counts["delivered"] += 1
                return
            self.counts["failed"] += 1
        self.counts["given_up"] += 1

    async def _post(self, url: str, webhook_id: str, body: bytes) -> bool:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self._config.webhook_timeout_s, follow_redirects=False
            )
        headers = signed_headers(
            self._config.webhook_secret, webhook_id, body, timestamp=int(time.time())
        )
        try:
            response = await self._client.post(url, content=body, headers=headers)
        except httpx.HTTPError:
            return False
        return response.is_success


async def _until_done(prediction: EmulatedPrediction) -> None:
    """Return once the prediction has ended (a cancel ends it early and sets ``changed``)."""
    while (left := prediction.t0 + prediction.timeline.end_s - time.monotonic()) > 0:
        if prediction.changed.is_set():
            await asyncio.sleep(left)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(prediction.changed.wait(), left)
