"""Redaction and bounding of upstream text, data: URIs decoded in slices, the rate guard."""

from __future__ import annotations

import base64
import logging

import pytest

from mediagen.fetching import data_uri
from mediagen.fetching.data_uri import MalformedDataUri, data_uri_chunks
from mediagen.fetching.fetcher import RateGuard
from mediagen.media.inspect import OutputTooLarge
from mediagen.redaction import RedactingFilter, bound, clean_upstream, redact

TOKEN = "r8_Xb3kQ9zL2mN8pR4tV6wY1aC5eG7iK0oS2uW4yZ"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"Invalid token {TOKEN}", TOKEN),
        (f"Authorization: Bearer {TOKEN}", TOKEN),
        ("authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ('{"headers": {"Authorization": "Token abc.def-ghi"}}', "abc.def-ghi"),
        ("sent Bearer eyJhbGciOi.payload.sig to the server", "eyJhbGciOi.payload.sig"),
        (
            "GET https://bucket.s3.amazonaws.com/o.png?X-Amz-Credential=AKIAX&X-Amz-Signature=deadbeef",
            "deadbeef",
        ),
        ("https://bucket.s3.amazonaws.com/o.png?X-Amz-Credential=AKIAEXAMPLE&b=1", "AKIAEXAMPLE"),
        ("https://x.blob.core.windows.net/c/o?sv=2020&sig=SASsig%2B123", "SASsig%2B123"),
        ("https://cdn/x?token=tok_secret_1&w=1", "tok_secret_1"),
        ("https://cdn/x?a=1&signature=abc123", "abc123"),
        ("https://storage.googleapis.com/b/o?X-Goog-Signature=0a1b2c", "0a1b2c"),
        ("fetching https://user:hunter2@host/x failed", "hunter2"),
    ],
)
def test_secrets_are_redacted(text: str, secret: str) -> None:
    cleaned = redact(text)
    assert secret not in cleaned and "[REDACTED]" in cleaned


def test_ordinary_text_is_untouched() -> None:
    text = "CUDA out of memory. Tried to allocate 2.00 GiB; see https://replicate.com/docs?x=1"
    assert redact(text) == text


def test_bound_marks_the_cut() -> None:
    assert bound("short") == "short"
    cut = bound("x" * 5000, 2048)
    assert cut.startswith("x" * 2048) and "[truncated: 5000 characters in all]" in cut
    assert len(cut) < 2100


def test_clean_upstream_of_megabytes_is_small_and_redacted() -> None:
    huge = f"{TOKEN} " + "E" * (5 * 1024 * 1024)
    cleaned = clean_upstream(huge)
    assert TOKEN not in cleaned and len(cleaned) < 2100
    assert f"[truncated: {len(huge)} characters in all]" in cleaned


def test_the_log_filter_redacts_formatted_messages() -> None:
    record = logging.LogRecord(
        "httpx", logging.INFO, __file__, 1, "GET %s", (f"?sig={TOKEN}",), None
    )
    assert RedactingFilter().filter(record)
    assert TOKEN not in record.getMessage()


def test_data_uris_decode_in_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data_uri, "SLICE_CHARS", 8)
    payload = bytes(range(256)) * 3
    encoded = base64.b64encode(payload).decode()
    spaced = " \n".join(encoded[i : i + 7] for i in range(0, len(encoded), 7))
    chunks = list(data_uri_chunks(f"data:image/png;base64,{spaced}", max_bytes=10_000))
    assert b"".join(chunks) == payload and len(chunks) > 10
    assert max(len(c) for c in chunks) <= 9  # a slice of 8 characters, plus a carry of up to 3
    unpadded = base64.b64encode(b"hello").decode().rstrip("=")
    assert b"".join(data_uri_chunks(f"data:;base64,{unpadded}", max_bytes=10)) == b"hello"
    percent = b"".join(data_uri_chunks("data:,hello%20world%21%7E", max_bytes=100))
    assert percent == b"hello world!~"


def test_data_uris_stop_at_the_size_limit() -> None:
    encoded = base64.b64encode(b"x" * 2000).decode()
    chunks = data_uri_chunks(f"data:application/octet-stream;base64,{encoded}", max_bytes=1000)
    with pytest.raises(OutputTooLarge):
        list(chunks)


@pytest.mark.parametrize("uri", ["data:text/plain;base64", "nodata:,x", "data:;base64,A"])
def test_malformed_data_uris(uri: str) -> None:
    with pytest.raises(MalformedDataUri):
        list(data_uri_chunks(uri, max_bytes=100))


def test_rate_guard() -> None:
    guard = RateGuard(min_rate_bps=1000, grace_s=10, start=100.0)
    assert guard.fails_at(0) == 110.0  # nothing is too slow within the grace period
    assert guard.fails_at(5_000) == 110.0
    assert guard.fails_at(20_000) == 120.0  # 20 kB buy 20 s at 1 kB/s
    assert RateGuard(0, 10, 0).fails_at(0) == float("inf")
