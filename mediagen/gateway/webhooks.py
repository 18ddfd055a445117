"""``POST /webhooks/replicate``: Replicate's completion webhooks, turned into settled notices.

No API key: the signature is the authentication (docs/threat-model.md). A delivery is read up
to ``max_body_bytes`` (413 beyond), verified (:mod:`mediagen.webhooks.verify`: 400 malformed,
401 forged or stale; 503 while the secret cannot be fetched, so Replicate retries), checked
against recent messages (a repeat gets 200 ``duplicate`` and does nothing), and answered 200 at
once: the only work is publishing a notice for the job's worker, which then reads the
prediction itself. Nothing here writes the store, so no webhook, even a genuine one naming the
wrong job, can change a job: the worker acts only on its own prediction id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import grpc
from starlette.types import Receive, Scope, Send

from mediagen.events.settled import Settled, SettledNotices
from mediagen.gateway import asgi, errors, jsonmap, limits
from mediagen.metrics import definitions as metrics
from mediagen.providers.base import ProviderError
from mediagen.providers.marker import Marker
from mediagen.webhooks.secret import SigningSecret
from mediagen.webhooks.seen import Seen
from mediagen.webhooks.verify import BadSecret, Delivery, Refused, verify

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: The route; ``MEDIAGEN_WEBHOOK_URL`` must lead here.
WEBHOOK_PATH = "/webhooks/replicate"


class WebhookReceiver:
    """Handles the route for one gateway."""

    def __init__(
        self,
        secret: SigningSecret,
        seen: Seen,
        notices: SettledNotices,
        *,
        tolerance_s: float,
        max_body_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self._seen = seen
        self._notices = notices
        self._tolerance_s = tolerance_s
        self._max_body_bytes = max_body_bytes
        self._clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        asgi.only(scope["method"], "POST")
        headers = dict(asgi.scope_headers(scope))
        length = limits.declared_length(headers)
        if length is not None and length > self._max_body_bytes:
            raise limits.body_too_large(self._max_body_bytes)
        body = await asgi.read_body(receive, self._max_body_bytes)
        url_marker = Marker.from_webhook_url("?" + scope.get("query_string", b"").decode("latin-1"))
        try:
            delivery = await self._verified(headers, body, url_marker)
        except Refused as exc:
            metrics.WEBHOOKS.labels("refused").inc()
            log.warning("webhook refused: %s", exc)
            if exc.unauthenticated:
                raise errors.GatewayError(grpc.StatusCode.UNAUTHENTICATED, str(exc)) from exc
            raise errors.invalid_argument(str(exc)) from exc
        if not await self._seen.first(delivery.dedupe_key):
            metrics.WEBHOOKS.labels("duplicate").inc()
            await asgi.send_json(send, 200, jsonmap.dumps({"status": "duplicate"}))
            return
        if delivery.status.terminal:
            marker = delivery.marker
            await self._notices.publish(
                Settled(
                    marker.job_id, marker.attempt, delivery.prediction_id, delivery.status.value
                )
            )
        metrics.WEBHOOKS.labels("accepted").inc()
        log.info(
            "job=%s webhook: prediction=%s %s",
            delivery.marker.job_id,
            delivery.prediction_id,
            delivery.status.value,
        )
        await asgi.send_json(send, 200, jsonmap.dumps({"status": "accepted"}))

    async def _verified(
        self, headers: Mapping[str, str], body: bytes, url_marker: Marker | None
    ) -> Delivery:
        """Verify with the current secret; on a bad signature, once more with a rotated one."""
        secret = await self._secret_or_unavailable(self._secret.current())
        try:
            return self._verify(headers, body, url_marker, secret)
        except Refused as exc:
            if not exc.unauthenticated:
                raise
            rotated = await self._secret_or_unavailable(self._secret.newer())
            if rotated is None:
                raise
            return self._verify(headers, body, url_marker, rotated)

    def _verify(
        self, headers: Mapping[str, str], body: bytes, url_marker: Marker | None, secret: str
    ) -> Delivery:
        try:
            return verify(
                headers,
                body,
                url_marker,
                secret=secret,
                now=self._clock(),
                tolerance_s=self._tolerance_s,
            )
        except BadSecret as exc:
            log.error("webhooks cannot be verified: %s", exc)
            raise errors.GatewayError(grpc.StatusCode.UNAVAILABLE, str(exc)) from exc

    @staticmethod
    async def _secret_or_unavailable(fetching: Awaitable[_T]) -> _T:
        """The secret, or 503 while Replicate cannot give it (Replicate retries the webhook)."""
        try:
            return await fetching
        except ProviderError as exc:
            log.warning("webhook signing secret unavailable: %s", exc)
            raise errors.GatewayError(
                grpc.StatusCode.UNAVAILABLE, f"webhook signing secret unavailable: {exc}"
            ) from exc
