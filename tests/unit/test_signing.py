"""Signed media URLs (pure): what is signed, what is refused."""

from __future__ import annotations

import pytest

from mediagen.storage.signing import EXPIRES, SIGNATURE, UrlRefused, sign, signature, verify

SECRET = "s3cret"
NOW = 1_800_000_000.0


def params(key: str = "job/0.png", ttl_s: int = 60) -> list[tuple[str, str]]:
    return list(sign(SECRET, key, now=NOW, ttl_s=ttl_s).items())


def test_a_signed_url_is_good_for_its_key_until_it_expires() -> None:
    query = params()
    assert dict(query)[EXPIRES] == str(int(NOW) + 60)
    verify(SECRET, "job/0.png", query, now=NOW)
    verify(SECRET, "job/0.png", query, now=NOW + 60)  # the last second still counts
    with pytest.raises(UrlRefused, match="expired"):
        verify(SECRET, "job/0.png", query, now=NOW + 61)


def test_the_signature_is_hmac_sha256_of_key_and_expiry() -> None:
    import hashlib
    import hmac

    expected = hmac.new(
        SECRET.encode(), b"mediagen media url v1\njob/0.png\n1800000060", hashlib.sha256
    ).hexdigest()
    assert signature(SECRET, "job/0.png", 1_800_000_060) == expected
    assert dict(params())[SIGNATURE] == expected


@pytest.mark.parametrize(
    ("key", "query"),
    [
        ("job/1.png", params()),  # another key
        ("job/0.png", params("job/0.png\n1")),  # a key that would shift the expiry
        ("job/0.png", [(EXPIRES, str(int(NOW) + 9999)), params()[1]]),  # a later expiry
        ("job/0.png", [params()[0], (SIGNATURE, "0" * 64)]),  # a guessed signature
        ("job/0.png", [params()[0], (SIGNATURE, params()[1][1].upper())]),
        ("job/0.png", [params()[0], (SIGNATURE, "é" * 64)]),  # not ASCII: still just refused
        ("job/0.png", params()[:1]),  # no signature
        ("job/0.png", params()[1:]),  # no expiry
        ("job/0.png", []),
        ("job/0.png", [*params(), params()[0]]),  # a repeated parameter is ambiguous
        ("job/0.png", [(EXPIRES, "+1800000060"), params()[1]]),
        ("job/0.png", [(EXPIRES, "1" * 13), params()[1]]),
    ],
)
def test_anything_but_the_signed_url_is_refused(key: str, query: list[tuple[str, str]]) -> None:
    with pytest.raises(UrlRefused):
        verify(SECRET, key, query, now=NOW)


def test_another_secret_does_not_verify() -> None:
    with pytest.raises(UrlRefused, match="does not match"):
        verify("other", "job/0.png", params(), now=NOW)
