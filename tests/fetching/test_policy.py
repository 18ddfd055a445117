"""The output host allowlist and the token rule (pure)."""

from __future__ import annotations

import pytest

from mediagen.config import ConfigError, Settings
from mediagen.fetching.policy import (
    ADDRESS_FORBIDDEN,
    HOST_NOT_ALLOWED,
    FetchPolicy,
    HostRule,
    Refused,
)

DEFAULT = FetchPolicy.build()
EMULATOR = FetchPolicy.build(
    output_hosts=("replicate.delivery", "*.replicate.delivery", "127.0.0.1:8090"),
    api_base_url="http://127.0.0.1:8090",
)


@pytest.mark.parametrize(
    "url",
    [
        "https://replicate.delivery/pbxt/abc/out-0.png",
        "https://pbxt.replicate.delivery/abc/out-0.png",
        "https://a.b.replicate.delivery/x.webp?X-Amz-Signature=1",
        "https://REPLICATE.DELIVERY./x.png",  # case and a trailing dot
        "https://replicate.delivery:443/x.png",
    ],
)
def test_delivery_hosts_are_allowed_by_default(url: str) -> None:
    assert DEFAULT.check(url).rule.port is None


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://replicate.delivery/x.png", "(http, port 80)"),  # plain http
        ("https://replicate.delivery:8443/x.png", "port 8443"),
        ("https://evilreplicate.delivery/x.png", "evilreplicate.delivery"),
        ("https://replicate.delivery.evil.com/x.png", "replicate.delivery.evil.com"),
        ("https://replicate.delivery@127.0.0.1/x.png", "credentials"),
        ("http://127.0.0.1:8080/x.png", "127.0.0.1"),
        ("http://localhost/x.png", "localhost"),
        ("http://[::1]/x.png", "::1"),
        ("http://0.0.0.0/", "0.0.0.0"),
        ("http://2130706433/", "non-canonical numeric address (127.0.0.1)"),
        ("http://0x7f.1/", "non-canonical numeric address"),
        ("http://127.1/", "non-canonical numeric address"),
        ("http://0177.0.0.1/", "0177.0.0.1"),  # httpx already calls it malformed
        ("http://[::ffff:127.0.0.1]/", "::ffff:7f00:1"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://10.0.0.1/x.png", "10.0.0.1"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("ftp://replicate.delivery/x", "scheme 'ftp'"),
        ("https:///x.png", "(no host)"),
    ],
)
def test_everything_else_is_refused_with_a_reason(url: str, says: str) -> None:
    with pytest.raises(Refused) as caught:
        DEFAULT.check(url)
    assert caught.value.reason == HOST_NOT_ALLOWED
    assert says in str(caught.value)


def test_an_exact_entry_allows_that_host_and_port_only_and_may_be_private() -> None:
    hop = EMULATOR.check("http://127.0.0.1:8090/files/p/out-0.png")
    assert hop.private_ok and EMULATOR.private_ok("127.0.0.1", 8090)
    for other in ("http://127.0.0.1:8091/x", "http://localhost:8090/x", "http://2130706433:8090/"):
        with pytest.raises(Refused):
            EMULATOR.check(other)
    assert not EMULATOR.private_ok("127.0.0.1", 8091)
    assert not EMULATOR.check("https://replicate.delivery/x").private_ok


def test_ipv6_exact_entries_match_any_spelling_of_the_address() -> None:
    policy = FetchPolicy.build(output_hosts=("[::1]:9000",))
    assert policy.check("http://[0:0::1]:9000/x").private_ok
    assert policy.private_ok("::1", 9000)


@pytest.mark.parametrize(
    ("entry", "rule"),
    [
        ("replicate.delivery", HostRule("replicate.delivery")),
        ("*.Replicate.Delivery", HostRule("replicate.delivery", wildcard=True)),
        ("127.0.0.1:8090", HostRule("127.0.0.1", port=8090)),
        ("emulator:8090", HostRule("emulator", port=8090)),
        ("[::1]:9000", HostRule("::1", port=9000)),
        ("minio.internal:443", HostRule("minio.internal", port=443)),
    ],
)
def test_entries_parse(entry: str, rule: HostRule) -> None:
    assert HostRule.parse(entry) == rule


@pytest.mark.parametrize(
    "entry", ["*.x.com:443", "a b", "http://x.com", "x.com:0", "x.com:99999", "2130706433", "*."]
)
def test_bad_entries_are_rejected(entry: str) -> None:
    with pytest.raises(ValueError):
        HostRule.parse(entry)


def test_the_token_goes_to_token_hosts_and_the_api_only_and_never_across_origins() -> None:
    policy = FetchPolicy.build(
        output_hosts=("*.replicate.delivery", "cdn.example.com", "127.0.0.1:8090"),
        api_base_url="http://127.0.0.1:8090",
    )
    delivery = policy.check("https://pbxt.replicate.delivery/x.png")
    cdn = policy.check("https://cdn.example.com/x.png")
    api = policy.check("http://127.0.0.1:8090/files/p/x.png")

    assert policy.sends_token(delivery, delivery)
    assert policy.sends_token(api, api)  # the API's own origin
    assert not policy.sends_token(cdn, cdn)  # allowed for fetching, not for the token
    # A redirect: the token never follows to another origin, even another token host.
    other_delivery = policy.check("https://other.replicate.delivery/x.png")
    assert not policy.sends_token(other_delivery, delivery)
    assert not policy.sends_token(cdn, delivery)
    assert policy.sends_token(delivery, delivery)


def test_reasons_are_distinct() -> None:
    assert HOST_NOT_ALLOWED != ADDRESS_FORBIDDEN


def test_settings_read_and_check_the_host_lists() -> None:
    default = Settings.from_env({})
    assert default.output_hosts == ("replicate.delivery", "*.replicate.delivery")
    assert Settings.from_env({"MEDIAGEN_OUTPUT_HOSTS": " "}).output_hosts == default.output_hosts
    env = {"MEDIAGEN_OUTPUT_HOSTS": "cdn.example.com, 127.0.0.1:8090", "MEDIAGEN_MAX_OUTPUTS": "3"}
    settings = Settings.from_env(env)
    assert settings.output_hosts == ("cdn.example.com", "127.0.0.1:8090")
    assert settings.max_outputs == 3
    with pytest.raises(ConfigError, match="MEDIAGEN_OUTPUT_TOKEN_HOSTS"):
        Settings.from_env({"MEDIAGEN_OUTPUT_TOKEN_HOSTS": "*.x.com:443"})
