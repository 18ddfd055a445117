"""Is this POST a completion webhook Replicate signed, and for which job? Pure: no I/O.

The checks, in order (reference/replicate.md §1.8): the three ``webhook-*`` headers are there
and the timestamp is an integer (else 400); the timestamp is within ``tolerance_s`` of now and
the signature matches the raw body (else 401: the replicate client's own ``Webhooks.validate``
checks it, in constant time); the body is a prediction carrying a marker (400).

The URL the webhook was sent to is not signed, only the body is, so the job comes from the
marker in the body's own ``webhook`` field, and a URL naming another marker is refused: a
signed delivery replayed to ``?job=<another job>`` must not reach that job.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from replicate.webhook import InvalidSecretKeyError, Webhooks, WebhookSigningSecret

from mediagen.providers.base import PredictionStatus
from mediagen.providers.marker import Marker

HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


class Refused(Exception):
    """Not a delivery to act on. ``unauthenticated``: 401 (bad signature, stale); else 400."""

    def __init__(self, message: str, *, unauthenticated: bool = False) -> None:
        super().__init__(message)
        self.unauthenticated = unauthenticated


class BadSecret(Exception):
    """The signing secret itself is unusable (not ``whsec_<base64>``): our problem, not the
    sender's."""


@dataclass(frozen=True)
class Delivery:
    """A verified webhook: which message, for which job attempt, about which prediction."""

    webhook_id: str
    marker: Marker
    prediction_id: str
    status: PredictionStatus

    @property
    def dedupe_key(self) -> str:
        """Same message, prediction and status: a repeat of one delivery (reference §1.8)."""
        return f"{self.webhook_id}:{self.prediction_id}:{self.status.value}"


def verify(
    headers: Mapping[str, str],
    body: bytes,
    url_marker: Marker | None,
    *,
    secret: str,
    now: float,
    tolerance_s: float,
) -> Delivery:
    """The delivery in a webhook request (``headers`` with lower-case names); raises
    :class:`Refused`, or :class:`BadSecret` when ``secret`` cannot be used."""
    webhook_id, timestamp = _check_headers(headers)
    if abs(now - timestamp) > tolerance_s:
        raise Refused(
            f"webhook-timestamp is more than {tolerance_s:g}s from now", unauthenticated=True
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused("the body is not UTF-8") from exc
    try:
        Webhooks.validate(  # returns None; raises on any mismatch
            headers={name: headers[name] for name in HEADERS},
            body=text,
            secret=WebhookSigningSecret(key=secret),
        )
    except InvalidSecretKeyError as exc:
        raise BadSecret("the webhook signing secret is not of the form whsec_<base64>") from exc
    except ValueError as exc:  # InvalidSignatureError, a malformed signature or its base64
        raise Refused("webhook-signature does not match", unauthenticated=True) from exc
    delivery = _delivery(webhook_id, text)
    if url_marker is not None and url_marker != delivery.marker:
        raise Refused("the URL's job and attempt differ from the signed body's")
    return delivery


def _check_headers(headers: Mapping[str, str]) -> tuple[str, int]:
    for name in HEADERS:
        if not headers.get(name, "").strip():
            raise Refused(f"the {name} header is missing")
    raw = headers["webhook-timestamp"].strip()
    if not (raw.isascii() and raw.isdigit()):
        raise Refused("webhook-timestamp is not a whole number of seconds")
    return headers["webhook-id"], int(raw)


def _delivery(webhook_id: str, text: str) -> Delivery:
    try:
        prediction = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Refused("the body is not JSON") from exc
    if not isinstance(prediction, dict):
        raise Refused("the body is not a prediction")
    prediction_id, status = prediction.get("id"), prediction.get("status")
    if not isinstance(prediction_id, str) or not prediction_id:
        raise Refused("the prediction has no id")
    try:
        state = PredictionStatus(str(status))
    except ValueError as exc:
        raise Refused(f"unknown prediction status {status!r}") from exc
    marker = Marker.from_webhook_url(prediction.get("webhook"))
    if marker is None:
        raise Refused("the prediction carries no job marker: it is not this service's")
    return Delivery(webhook_id, marker, prediction_id, state)
