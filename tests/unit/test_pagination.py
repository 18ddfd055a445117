from datetime import UTC, datetime

import pytest

from mediagen.errors import InvalidArgument
from mediagen.jobs.pagination import Cursor, decode_token, encode_token

CURSOR = Cursor(datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC), "job-1", "succeeded", "acme")


def test_round_trip() -> None:
    token = encode_token(CURSOR, "s3cret")
    assert decode_token(token, "s3cret", status_filter="succeeded", tenant_scope="acme") == CURSOR
    assert "job-1" not in token  # opaque, not a readable position


@pytest.mark.parametrize("token", ["", "garbage", "!!!", "AAAA", "x" * 200])
def test_malformed_tokens_are_invalid_argument(token: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        decode_token(token, "s3cret", status_filter="succeeded", tenant_scope="acme")
    assert err.value.violations[0].field == "page_token"


def test_forged_and_foreign_tokens_are_rejected() -> None:
    with pytest.raises(InvalidArgument):
        decode_token(
            encode_token(CURSOR, "other-key"),
            "s3cret",
            status_filter="succeeded",
            tenant_scope="acme",
        )
    with pytest.raises(InvalidArgument, match="different status filter"):
        decode_token(
            encode_token(CURSOR, "s3cret"), "s3cret", status_filter="failed", tenant_scope="acme"
        )
