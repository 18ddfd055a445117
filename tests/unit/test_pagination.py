import base64
import hashlib
import hmac
from datetime import UTC, datetime

import pytest

from mediagen.errors import InvalidArgument
from mediagen.jobs.pagination import MAX_TOKEN_CHARS, Cursor, decode_token, encode_token

CURSOR = Cursor(datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC), "job-1", "succeeded", "acme")


def test_round_trip() -> None:
    token = encode_token(CURSOR, "s3cret")
    assert decode_token(token, "s3cret", filter_key="succeeded", tenant_scope="acme") == CURSOR
    assert "job-1" not in token  # opaque, not a readable position


@pytest.mark.parametrize("token", ["", "garbage", "!!!", "AAAA", "x" * 200])
def test_malformed_tokens_are_invalid_argument(token: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        decode_token(token, "s3cret", filter_key="succeeded", tenant_scope="acme")
    assert err.value.violations[0].field == "page_token"


def test_forged_and_foreign_tokens_are_rejected() -> None:
    with pytest.raises(InvalidArgument):
        decode_token(
            encode_token(CURSOR, "other-key"),
            "s3cret",
            filter_key="succeeded",
            tenant_scope="acme",
        )
    with pytest.raises(InvalidArgument, match="different filter"):
        decode_token(
            encode_token(CURSOR, "s3cret"), "s3cret", filter_key="failed", tenant_scope="acme"
        )


def signed(body: bytes, secret: str = "s3cret") -> str:
    """A token correctly signed with ``secret`` around any body: what a holder of the key (or
    of a leaked default key) could send."""
    signature = hmac.new(secret.encode(), body, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(signature + body).decode().rstrip("=")


@pytest.mark.parametrize(
    "body",
    [
        b"[1, 2, 3, 4]",  # wrong types
        b'["2026-01-01T00:00:00+00:00", ["job"], "", null]',
        b'["2026-01-01T00:00:00+00:00", "job", 7, null]',
        b'{"a": 1}',
        b'["2026-01-01T00:00:00+00:00", "job", "", 7]',  # a scope that is no tenant name
        b'["2026-01-01T00:00:00+00:00", "job"]',  # wrong length
        b'["2026-01-01T00:00:00", "job", "", null]',  # naive date: the store compares aware ones
        b'["2026-13-45T00:00:00+00:00", "job", "", null]',  # no such date
        b'["yesterday", "job", "", null]',
        b'["2026-01-01T00:00:00+00:00", "' + b"j" * 300 + b'", "", null]',  # huge id
        b'["2026-01-01T00:00:00+00:00", "job\\u0000", "", null]',  # NUL: PostgreSQL refuses it
        b"[" * 100_000 + b"]" * 100_000,  # nested past the parser's recursion limit
        b"\xff\xfe not utf-8",
        b"NaN",
    ],
)
def test_signed_garbage_is_invalid_argument(body: bytes) -> None:
    with pytest.raises(InvalidArgument) as err:
        decode_token(signed(body), "s3cret", filter_key="", tenant_scope=None)
    assert [v.field for v in err.value.violations] == ["page_token"]


def test_huge_tokens_are_refused_before_decoding() -> None:
    with pytest.raises(InvalidArgument):
        decode_token("A" * (MAX_TOKEN_CHARS + 1), "s3cret", filter_key="", tenant_scope=None)
