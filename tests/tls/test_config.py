"""TLS settings and files: what turns TLS on, and the clear errors for files that cannot work."""

from __future__ import annotations

import argparse
import ssl
from pathlib import Path

import pytest

from mediagen.cli import build_parser, tls_options
from mediagen.cli.base import UsageError
from mediagen.cli.tls_options import client_tls
from mediagen.client import MediagenClient
from mediagen.config import ConfigError, Settings, TLSSettings
from mediagen.tls import ClientTLS, check_server_files, uvicorn_ssl_options
from tests.fixtures.tls import TLSFiles


def test_tls_is_off_by_default_and_urls_stay_http() -> None:
    settings = Settings.from_env({})
    assert settings.tls is None
    assert settings.effective_public_url == "http://127.0.0.1:8080"


def test_cert_and_key_turn_tls_on_and_local_media_urls_become_https() -> None:
    settings = Settings.from_env(
        {"MEDIAGEN_TLS_CERT": "/etc/tls/server.pem", "MEDIAGEN_TLS_KEY": "/etc/tls/server.key"}
    )
    assert settings.tls == TLSSettings(Path("/etc/tls/server.pem"), Path("/etc/tls/server.key"))
    assert not settings.tls.mutual
    assert settings.effective_public_url == "https://127.0.0.1:8080"


def test_a_client_ca_makes_it_mutual() -> None:
    settings = Settings.from_env(
        {
            "MEDIAGEN_TLS_CERT": "s.pem",
            "MEDIAGEN_TLS_KEY": "s.key",
            "MEDIAGEN_TLS_CLIENT_CA": "clients.pem",
        }
    )
    assert settings.tls is not None and settings.tls.mutual
    assert settings.tls.client_ca == Path("clients.pem")


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"MEDIAGEN_TLS_CERT": "s.pem"}, "must be set together"),
        ({"MEDIAGEN_TLS_KEY": "s.key"}, "must be set together"),
        ({"MEDIAGEN_TLS_CLIENT_CA": "c.pem"}, "MEDIAGEN_TLS_CLIENT_CA needs MEDIAGEN_TLS_CERT"),
    ],
)
def test_incomplete_tls_settings_are_refused_at_start(env: dict[str, str], complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        Settings.from_env(env)


def test_good_server_files_give_uvicorn_the_same_client_rule(tls_files: TLSFiles) -> None:
    assert uvicorn_ssl_options(tls_files.server())["ssl_cert_reqs"] == ssl.CERT_NONE
    mutual = uvicorn_ssl_options(tls_files.server(mutual=True))
    assert mutual["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert mutual["ssl_ca_certs"] == str(tls_files.ca)


def test_server_files_that_cannot_work_are_named(tls_files: TLSFiles, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(ConfigError, match=f"cannot read the server certificate '{missing}'"):
        check_server_files(TLSSettings(missing, tls_files.server_key))
    with pytest.raises(ConfigError, match="do not form a usable pair"):
        check_server_files(TLSSettings(tls_files.server_cert, tls_files.client_key))
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="holds no usable PEM certificate"):
        check_server_files(TLSSettings(tls_files.server_cert, tls_files.server_key, not_pem))


def test_client_tls_checks_its_files(tls_files: TLSFiles, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs its key"):
        ClientTLS(ca=tls_files.ca, cert=tls_files.client_cert)
    with pytest.raises(ConfigError, match="cannot read the CA file"):
        ClientTLS(ca=tmp_path / "missing.pem").grpc_credentials()
    with pytest.raises(ConfigError, match="do not form a usable pair"):
        ClientTLS(cert=tls_files.client_cert, key=tls_files.other_key).grpc_credentials()


def test_mediagen_client_reads_its_files_when_made(tls_files: TLSFiles, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the CA file"):
        MediagenClient(tls=True, ca=tmp_path / "missing.pem")
    with pytest.raises(ValueError, match="either credentials or tls"):
        MediagenClient(ca=tls_files.ca, credentials=ClientTLS(ca=tls_files.ca).grpc_credentials())


# -- the CLI's flags and variables


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in tls_options.ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


def _tls(*argv: str) -> ClientTLS | None:
    args: argparse.Namespace = build_parser().parse_args(list(argv))
    return client_tls(args)


def test_cli_is_plaintext_unless_asked(tls_files: TLSFiles) -> None:
    assert _tls("jobs", "list") is None
    assert _tls("--tls", "jobs", "list") == ClientTLS()
    assert _tls("jobs", "list", "--ca", str(tls_files.ca)) == ClientTLS(ca=tls_files.ca)
    assert _tls(
        "--cert", str(tls_files.client_cert), "jobs", "list", "--key", str(tls_files.client_key)
    ) == ClientTLS(cert=tls_files.client_cert, key=tls_files.client_key)
    # mediagen gateway takes them after its name too, for its calls to the API.
    assert _tls("gateway", "--grpc-target", "api:50051", "--ca", str(tls_files.ca)) == ClientTLS(
        ca=tls_files.ca
    )


def test_cli_flags_win_over_the_environment(
    monkeypatch: pytest.MonkeyPatch, tls_files: TLSFiles
) -> None:
    monkeypatch.setenv("MEDIAGEN_TARGET_CA", str(tls_files.other_ca))
    assert _tls("jobs", "list") == ClientTLS(ca=tls_files.other_ca)
    assert _tls("jobs", "list", "--ca", str(tls_files.ca)) == ClientTLS(ca=tls_files.ca)
    monkeypatch.delenv("MEDIAGEN_TARGET_CA")
    monkeypatch.setenv("MEDIAGEN_TARGET_TLS", "true")
    assert _tls("jobs", "list") == ClientTLS()


@pytest.mark.parametrize(
    ("argv", "env", "complaint"),
    [
        (["--cert", "{client_cert}"], {}, "--cert and --key go together"),
        ([], {"MEDIAGEN_TARGET_TLS": "maybe"}, "MEDIAGEN_TARGET_TLS must be true or false"),
        (["--ca", "/nonexistent/ca.pem"], {}, "cannot read the CA file '/nonexistent/ca.pem'"),
        (
            ["--cert", "{client_cert}", "--key", "{other_key}"],
            {},
            "do not form a usable pair",
        ),
    ],
)
def test_cli_tls_mistakes_are_usage_errors(
    monkeypatch: pytest.MonkeyPatch,
    tls_files: TLSFiles,
    argv: list[str],
    env: dict[str, str],
    complaint: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    files = {name: str(value) for name, value in vars(tls_files).items()}
    with pytest.raises(UsageError, match=complaint):
        _tls("jobs", "list", *(item.format(**files) for item in argv))
