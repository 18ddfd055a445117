"""TLS as a user meets it: `mediagen serve` with mTLS on, as its own process, and the `mediagen`
CLI (and a separate `mediagen gateway`) as real processes against it."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mediagen.cli import EXIT_FAILED, EXIT_OK
from tests.fixtures.processes import Cluster, free_port, wait_for_grpc_health
from tests.fixtures.tls import TLSFiles, make_tls_files

#: Shared by the API and a separate gateway, as in a deployment.
SECRET_KEY = secrets.token_hex(16)


@dataclass(frozen=True)
class Served:
    cluster: Cluster
    pki: TLSFiles
    target: str
    http_port: int

    def cli(
        self, *argv: str, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mediagen", *argv],
            env={**self.cluster.env, "MEDIAGEN_HTTP_PORT": str(self.http_port), **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
        )

    def mtls_flags(self) -> list[str]:
        pki = self.pki
        return ["--ca", str(pki.ca), "--cert", str(pki.client_cert), "--key", str(pki.client_key)]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One `mediagen serve` process with mTLS on both listeners, for the whole module."""
    root = tmp_path_factory.mktemp("tls-serve")
    pki = make_tls_files(root / "pki")
    logs = root / "logs"
    logs.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MEDIAGEN_", "S3_", "REPLICATE_"))
        and key not in {"DATABASE_URL", "REDIS_URL", "STORAGE_TYPE"}
    }
    cluster = Cluster(env=env | {"PYTHONUNBUFFERED": "1"}, logs=logs)
    grpc_port, http_port = free_port(), free_port()
    try:
        serve = cluster.start(
            "serve",
            "serve",
            env={
                "MEDIAGEN_DATA_DIR": str(root / "data"),
                "MEDIAGEN_GRPC_PORT": str(grpc_port),
                "MEDIAGEN_HTTP_PORT": str(http_port),
                "MEDIAGEN_EMULATOR_LATENCY_S": "0.5",
                "MEDIAGEN_TLS_CERT": str(pki.server_cert),
                "MEDIAGEN_TLS_KEY": str(pki.server_key),
                "MEDIAGEN_TLS_CLIENT_CA": str(pki.ca),
                "SECRET_KEY": SECRET_KEY,
            },
        )
        target = f"127.0.0.1:{grpc_port}"
        wait_for_grpc_health(target, serve, 60, credentials=pki.channel_credentials())
        yield Served(cluster, pki, target, http_port)
    finally:
        cluster.stop_all()


def _saved(stdout: str) -> list[Path]:
    return [Path(line.removeprefix("Saved ")) for line in stdout.splitlines() if "Saved " in line]


def test_cli_generates_watches_and_downloads_with_mtls(served: Served, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = served.cli(
        "generate",
        "a red fox",
        "--param",
        "width=64",
        "--param",
        "height=64",
        "--target",
        served.target,
        *served.mtls_flags(),
        "--watch",
        "--out",
        str(out),
    )

    assert result.returncode == EXIT_OK, result.stderr
    assert f"Status: https://127.0.0.1:{served.http_port}/api/v1/jobs/status/" in result.stdout
    (path,) = _saved(result.stdout)
    assert path.parent == out
    assert path.read_bytes().startswith(b"\x89PNG")
    assert "SUCCEEDED" in result.stdout


def _job_id(served: Served) -> str:
    submitted = served.cli("generate", "a fox", "--target", served.target, *served.mtls_flags())
    assert submitted.returncode == EXIT_OK, submitted.stderr
    return submitted.stdout.split()[2]  # "Submitted job <id> (PENDING)"


def test_cli_takes_tls_settings_from_the_environment(served: Served) -> None:
    job_id = _job_id(served)
    pki = served.pki
    result = served.cli(
        "jobs",
        "get",
        job_id,
        "--json",
        env={
            "MEDIAGEN_TARGET": served.target,
            "MEDIAGEN_TARGET_CA": str(pki.ca),
            "MEDIAGEN_TARGET_CERT": str(pki.client_cert),
            "MEDIAGEN_TARGET_KEY": str(pki.client_key),
        },
    )
    assert result.returncode == EXIT_OK, result.stderr
    assert f'"id": "{job_id}"' in result.stdout


@pytest.mark.parametrize(
    ("flags", "hint"),
    [
        ([], "if the server uses TLS, add --tls"),  # plaintext against TLS
        (["--ca", "{ca}"], "--cert/--key are a client certificate it accepts"),  # no cert
        (  # a certificate from another CA
            ["--ca", "{ca}", "--cert", "{other_cert}", "--key", "{other_key}"],
            "--cert/--key are a client certificate it accepts",
        ),
        (["--ca", "{other_ca}"], "check that --ca signed the server's certificate"),
    ],
    ids=["plaintext", "no-client-cert", "foreign-client-cert", "wrong-ca"],
)
def test_cli_is_refused_without_the_right_certificates(
    served: Served, flags: list[str], hint: str
) -> None:
    files = {name: str(value) for name, value in vars(served.pki).items()}
    argv = [flag.format(**files) for flag in flags]

    result = served.cli("jobs", "list", "--target", served.target, "--timeout", "10", *argv)

    assert result.returncode == EXIT_FAILED
    assert result.stderr.startswith(f"mediagen: error: cannot reach the server at {served.target}")
    assert hint in result.stderr
    assert len(result.stderr.splitlines()) == 1  # no gRPC core log lines, no traceback


def test_cli_reports_a_missing_certificate_file_as_a_usage_error(served: Served) -> None:
    result = served.cli("jobs", "list", "--target", served.target, "--ca", "/nonexistent/ca.pem")
    assert result.returncode == 2
    assert "cannot read the CA file '/nonexistent/ca.pem'" in result.stderr


def test_plaintext_http_to_the_tls_gateway_is_refused(served: Served) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{served.http_port}/api/v1/health", timeout=5)
    # Over HTTPS without a client certificate too: the gateway requires one.
    with pytest.raises(httpx.TransportError):
        httpx.get(
            f"https://127.0.0.1:{served.http_port}/api/v1/health",
            verify=served.pki.client(cert=False).ssl_context(),
            timeout=5,
        )
    ok = httpx.get(
        f"https://127.0.0.1:{served.http_port}/api/v1/health",
        verify=served.pki.client().ssl_context(),
        timeout=5,
    )
    assert ok.json()["status"] == "SERVING"
    assert [c["status"] for c in ok.json()["components"]] == ["SERVING"] * len(
        ok.json()["components"]
    )


def test_a_separate_gateway_process_reaches_the_mtls_api(served: Served, tmp_path: Path) -> None:
    job_id = _job_id(served)
    pki = served.pki
    port = free_port()
    gateway = served.cluster.start(
        "gateway",
        "gateway",
        "--grpc-target",
        served.target,
        *served.mtls_flags(),
        env={
            "MEDIAGEN_DATA_DIR": str(tmp_path / "gateway"),
            "MEDIAGEN_HTTP_PORT": str(port),
            "SECRET_KEY": SECRET_KEY,  # the API's: the gateway checks its media URLs
            # Its own listener: HTTPS with the same certificate, no client certificates asked.
            "MEDIAGEN_TLS_CERT": str(pki.server_cert),
            "MEDIAGEN_TLS_KEY": str(pki.server_key),
        },
    )
    url = f"https://127.0.0.1:{port}/api/v1/jobs/status/{job_id}"
    verify = pki.client(cert=False).ssl_context()
    deadline = time.monotonic() + 60
    while True:
        assert gateway.popen.poll() is None, gateway.output()
        try:
            response = httpx.get(url, verify=verify, timeout=5)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, gateway.output()
            time.sleep(0.2)
    try:
        assert response.status_code == 200, response.text
        assert response.json()["id"] == job_id
    finally:
        gateway.stop()
