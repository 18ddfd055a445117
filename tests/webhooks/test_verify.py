"""Verification of one webhook request: what passes, and why each bad one is refused."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from mediagen.emulator.webhooks import signed_headers
from mediagen.providers.base import PredictionStatus
from mediagen.providers.marker import Marker
from mediagen.webhooks.verify import BadSecret, Delivery, Refused, verify

SECRET = "whsec_dGVzdC1zaWduaW5nLWtleS0xMjM0NTY3ODkw"
OTHER_SECRET = "whsec_b3RoZXIta2V5LW9mLWFub3RoZXItYWNjb3VudA=="
NOW = 1_800_000_000
MARKER = Marker("job-1", 2)
HOOK = MARKER.webhook_url("https://media.example.com/webhooks/replicate")

Tamper = Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]]


def prediction(**changes: object) -> bytes:
    body = {"id": "p1", "status": "succeeded", "webhook": HOOK, "output": ["https://x/1.png"]}
    return json.dumps({**body, **changes}).encode()


def check(headers: dict[str, str], body: bytes, *, url_marker: Marker | None = MARKER) -> Delivery:
    return verify(headers, body, url_marker, secret=SECRET, now=NOW, tolerance_s=300)


def test_a_signed_delivery_names_its_job_attempt_and_prediction() -> None:
    body = prediction()
    delivery = check(signed_headers(SECRET, "msg_1", body, timestamp=NOW - 10), body)
    assert delivery == Delivery("msg_1", MARKER, "p1", PredictionStatus.SUCCEEDED)
    assert delivery.dedupe_key == "msg_1:p1:succeeded"


def test_several_signatures_pass_if_one_matches() -> None:
    body = prediction()
    headers = signed_headers(SECRET, "msg_1", body, timestamp=NOW)
    other = signed_headers(OTHER_SECRET, "msg_1", body, timestamp=NOW)["webhook-signature"]
    headers["webhook-signature"] = f"{other} {headers['webhook-signature']}"
    assert check(headers, body).prediction_id == "p1"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda h, b: (h, prediction(status="failed")), id="body-changed"),
        pytest.param(lambda h, b: ({**h, "webhook-id": "msg_2"}, b), id="id-changed-after-signing"),
        pytest.param(
            lambda h, b: ({**h, "webhook-timestamp": str(NOW - 1)}, b), id="timestamp-changed"
        ),
        pytest.param(
            lambda h, b: (signed_headers(OTHER_SECRET, "msg_1", b, timestamp=NOW), b),
            id="another-key",
        ),
        pytest.param(
            lambda h, b: ({**h, "webhook-signature": "v1,bm90LWEtc2lnbmF0dXJl"}, b), id="forged"
        ),
        pytest.param(lambda h, b: ({**h, "webhook-signature": "v1"}, b), id="no-base64-part"),
        pytest.param(
            lambda h, b: (signed_headers(SECRET, "msg_1", b, timestamp=NOW - 301), b),
            id="stale",
        ),
        pytest.param(
            lambda h, b: (signed_headers(SECRET, "msg_1", b, timestamp=NOW + 301), b),
            id="from-the-future",
        ),
    ],
)
def test_forged_or_stale_deliveries_are_unauthenticated(tamper: Tamper) -> None:
    body = prediction()
    headers, sent = tamper(signed_headers(SECRET, "msg_1", body, timestamp=NOW), body)
    with pytest.raises(Refused) as refused:
        check(headers, sent)
    assert refused.value.unauthenticated


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_malformed(missing: str) -> None:
    body = prediction()
    headers = signed_headers(SECRET, "msg_1", body, timestamp=NOW)
    del headers[missing]
    with pytest.raises(Refused, match=missing) as refused:
        check(headers, body)
    assert not refused.value.unauthenticated


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff\xfe", "UTF-8"),
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a prediction"),
        (prediction(id=None), "no id"),
        (prediction(status="exploded"), "unknown prediction status"),
        (prediction(webhook="https://elsewhere.example/hook"), "no job marker"),
    ],
)
def test_signed_but_unusable_bodies_are_malformed(body: bytes, message: str) -> None:
    with pytest.raises(Refused, match=message) as refused:
        check(signed_headers(SECRET, "msg_1", body, timestamp=NOW), body)
    assert not refused.value.unauthenticated


def test_a_timestamp_that_is_not_whole_seconds_is_malformed() -> None:
    body = prediction()
    headers = {**signed_headers(SECRET, "msg_1", body, timestamp=NOW), "webhook-timestamp": "1e9"}
    with pytest.raises(Refused, match="whole number") as refused:
        check(headers, body)
    assert not refused.value.unauthenticated


def test_a_url_naming_another_job_than_the_signed_body_is_refused() -> None:
    # The URL is not signed: a genuine delivery replayed to ?job=<other> must not reach it.
    body = prediction()
    headers = signed_headers(SECRET, "msg_1", body, timestamp=NOW)
    with pytest.raises(Refused, match="differ"):
        check(headers, body, url_marker=Marker("job-2", 2))
    with pytest.raises(Refused, match="differ"):
        check(headers, body, url_marker=Marker("job-1", 1))
    assert check(headers, body, url_marker=None).marker == MARKER  # a bare URL: body decides


def test_an_unusable_secret_is_our_problem_not_the_senders() -> None:
    body = prediction()
    headers = signed_headers(SECRET, "msg_1", body, timestamp=NOW)
    with pytest.raises(BadSecret):
        verify(headers, body, MARKER, secret="not-a-secret", now=NOW, tolerance_s=300)
