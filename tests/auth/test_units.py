"""The pure parts of authentication: key format and hashing, the policy, the mTLS mapping, the
start-up rule. No I/O."""

from __future__ import annotations

import pytest

from mediagen.auth import policy
from mediagen.auth.keys import (
    ApiKey,
    MalformedKey,
    check_tenant,
    hash_key,
    matches,
    new_key,
    parse_key,
)
from mediagen.auth.mtls import CertificatePolicy, UnusableCertificate, principal_from_certificate
from mediagen.auth.principal import Principal, Role
from mediagen.auth.startup import AuthMode, auth_mode, is_loopback, warning_lines
from mediagen.config import ConfigError, Settings
from mediagen.errors import (
    CredentialsMissing,
    InvalidApiKey,
    ReadOnlyRole,
    TenantOverrideDenied,
)

# -- keys


def test_new_keys_parse_back_and_differ() -> None:
    keys = [new_key() for _ in range(50)]
    assert len({k.text for k in keys}) == 50 and len({k.key_id for k in keys}) == 50
    for key in keys:
        assert key.text.startswith("mg_") and len(key.text) == 3 + 12 + 1 + 43
        assert parse_key(key.text) == key
        assert parse_key(f"  {key.text}\n") == key


@pytest.mark.parametrize(
    "text",
    [
        "",
        "mg_",
        "r8_abc",
        "mg_0123456789ab",
        "mg_0123456789AB_" + "a" * 43,
        "mg_0123456789ab_" + "a" * 42,
        "mg_0123456789ab_" + "a" * 44,
        "mg_0123456789ab_" + "!" * 43,
    ],
)
def test_malformed_keys_are_refused_without_echoing_them(text: str) -> None:
    with pytest.raises(MalformedKey) as caught:
        parse_key(text)
    assert str(caught.value) == "not a mediagen API key (expected mg_<id>_<secret>)"


def test_the_hash_binds_id_and_secret() -> None:
    key = new_key()
    stored = hash_key(key)
    assert key.secret not in stored and len(stored) == 64
    assert matches(key, stored)
    assert not matches(ApiKey(key.key_id, key.secret[:-1] + "x"), stored)
    assert not matches(ApiKey("0" * 12, key.secret), stored)
    assert key.secret not in repr(key)


@pytest.mark.parametrize("name", ["acme", "a", "team-7.prod", "ops@example.com", "x" * 100])
def test_valid_tenants(name: str) -> None:
    assert check_tenant(name) == name


@pytest.mark.parametrize("name", ["", " acme", "-acme", "a b", "x" * 101, "ünï", "a/b"])
def test_invalid_tenants(name: str) -> None:
    with pytest.raises(ValueError, match="invalid tenant"):
        check_tenant(name)


# -- policy

SERVICE = "/mediagen.v1.MediaGenerationService"


@pytest.mark.parametrize(
    ("method", "protect", "needed"),
    [
        ("/grpc.health.v1.Health/Check", True, False),
        ("/grpc.health.v1.Health/Watch", False, False),
        ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", False, False),
        ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", False, False),
        ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", True, True),
        (f"{SERVICE}/GetJob", False, True),
        (f"{SERVICE}/WatchJob", False, True),
    ],
)
def test_which_methods_need_credentials(method: str, protect: bool, needed: bool) -> None:
    assert policy.needs_credentials(method, protect_reflection=protect) is needed


def test_bearer_key() -> None:
    key = new_key()
    assert policy.bearer_key([]) is None
    assert policy.bearer_key([f"Bearer {key.text}"]) == key
    assert policy.bearer_key([f"bearer   {key.text}"]) == key
    for bad in (["Basic abc"], ["Bearer"], ["Bearer  "], [key.text], ["Bearer mg_x"]):
        with pytest.raises(InvalidApiKey):
            policy.bearer_key(bad)
    with pytest.raises(InvalidApiKey, match="one authorization"):
        policy.bearer_key([f"Bearer {key.text}", f"Bearer {key.text}"])
    assert isinstance(policy.missing_credentials(), CredentialsMissing)


ADMIN = Principal("ops", Role.ADMIN, key_id="a" * 12)
ACME = Principal("acme", Role.TENANT, key_id="b" * 12)
VIEWER = Principal("acme", Role.VIEWER, key_id="c" * 12)


def test_tenant_header() -> None:
    assert policy.act_for(ACME, []) is ACME
    assert policy.act_for(ACME, ["acme"]) == ACME
    assert policy.act_for(ADMIN, ["globex"]) == Principal("globex", Role.TENANT, key_id="a" * 12)
    for who, header in ((ACME, "globex"), (VIEWER, "globex"), (ADMIN, "not a tenant")):
        with pytest.raises(TenantOverrideDenied):
            policy.act_for(who, [header])


def test_viewers_may_only_read() -> None:
    for method in ("GetJob", "ListJobs", "WatchJob", "GetMedia"):
        policy.authorize(VIEWER, f"{SERVICE}/{method}")
    for method in ("GenerateMedia", "CancelJob"):
        policy.authorize(ACME, f"{SERVICE}/{method}")
        policy.authorize(ADMIN, f"{SERVICE}/{method}")
        with pytest.raises(ReadOnlyRole, match="read-only"):
            policy.authorize(VIEWER, f"{SERVICE}/{method}")


# -- mTLS

TLS = {"transport_security_type": [b"ssl"]}


def test_a_verified_certificate_names_its_tenant() -> None:
    context = {**TLS, "x509_common_name": [b"acme"], "x509_subject_alternative_name": [b"a.io"]}
    assert principal_from_certificate(context, CertificatePolicy()) == Principal(
        "acme", Role.TENANT, via="mtls"
    )
    admins = CertificatePolicy.of(["a.io", " "])
    assert principal_from_certificate(context, admins) == Principal("acme", Role.ADMIN, via="mtls")
    only_san = {**TLS, "x509_subject_alternative_name": [b"svc.acme.internal"]}
    assert principal_from_certificate(only_san, CertificatePolicy()) == Principal(
        "svc.acme.internal", Role.TENANT, via="mtls"
    )


def test_no_certificate_is_no_principal() -> None:
    assert principal_from_certificate({}, CertificatePolicy()) is None
    assert principal_from_certificate(TLS, CertificatePolicy()) is None
    insecure = {"transport_security_type": [b"insecure"], "x509_common_name": [b"acme"]}
    assert principal_from_certificate(insecure, CertificatePolicy()) is None


def test_a_certificate_whose_name_is_no_tenant_is_refused() -> None:
    with pytest.raises(UnusableCertificate):
        principal_from_certificate({**TLS, "x509_common_name": [b"Acme Corp"]}, CertificatePolicy())


# -- start-up


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.5.6.7", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.0.0.5", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_the_startup_rule() -> None:
    assert auth_mode(enabled=True, host="0.0.0.0", active_keys=1) is AuthMode.ENFORCED
    assert auth_mode(enabled=True, host="127.0.0.1", active_keys=2) is AuthMode.ENFORCED
    assert auth_mode(enabled=True, host="127.0.0.1", active_keys=0) is AuthMode.OPEN
    assert auth_mode(enabled=False, host="0.0.0.0", active_keys=0) is AuthMode.OFF
    assert auth_mode(enabled=False, host="0.0.0.0", active_keys=3) is AuthMode.OFF
    with pytest.raises(ConfigError, match=r"refusing to listen on 0\.0\.0\.0"):
        auth_mode(enabled=True, host="0.0.0.0", active_keys=0)
    assert warning_lines(AuthMode.ENFORCED, "h") == []
    open_text = "\n".join(warning_lines(AuthMode.OPEN, "127.0.0.1"))
    assert "WITHOUT AUTHENTICATION" in open_text and "next starts" in open_text
    assert "MEDIAGEN_AUTH=off" in "\n".join(warning_lines(AuthMode.OFF, "0.0.0.0"))


def test_auth_settings() -> None:
    assert Settings.from_env({}).auth is True
    settings = Settings.from_env(
        {
            "MEDIAGEN_AUTH": "off",
            "MEDIAGEN_AUTH_CACHE_S": "0",
            "MEDIAGEN_AUTH_REFLECTION": "true",
            "MEDIAGEN_AUTH_MTLS_ADMINS": "ops, root@x",
        }
    )
    assert (settings.auth, settings.auth_cache_s, settings.auth_reflection) == (False, 0.0, True)
    assert settings.auth_mtls_admins == ("ops", "root@x")
    with pytest.raises(ConfigError):
        Settings.from_env({"MEDIAGEN_AUTH": "maybe"})
