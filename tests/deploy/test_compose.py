"""docker-compose.yml: valid for the Compose spec, wired in the right order, with settings the
app accepts, and health checks that really speak grpc.health.v1 and HTTP."""

from __future__ import annotations

import http.server
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import pytest

from tests.deploy.support import ROLES, app_setting_names, settings_from

BACKING = {"postgres", "redis", "minio", "minio-init"}
APP = {"migrate", "emulator", "api", "worker", "gateway"}


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, f"write durations as <N>s, got {duration!r}"
    return float(match.group(1))


def test_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == BACKING | APP
    images = {services[name]["image"] for name in APP}
    assert len(images) == 1, f"one image for every role, got {images}"
    for name in APP:
        role = services[name]["command"][0]
        assert role in ROLES, f"{name} runs `mediagen {role}`, not a known role"
        assert "build" in services[name]


def test_workers_scale(compose: dict[str, Any]) -> None:
    """`docker compose up --scale worker=N` needs no fixed name and no published port."""
    worker = compose["services"]["worker"]
    assert "container_name" not in worker
    assert not worker.get("ports")


def test_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("migrate", "minio-init"):
        assert services[name]["restart"] == "no", f"{name} is a one-shot"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["minio-init"]["condition"] == "service_completed_successfully"
        assert deps["redis"]["condition"] == "service_healthy"
    assert services["gateway"]["depends_on"]["api"]["condition"] == "service_healthy"
    assert services["gateway"]["command"] == ["gateway", "--grpc-target", "api:50051"]


def test_redis_keeps_the_queue(compose: dict[str, Any]) -> None:
    command = " ".join(compose["services"]["redis"]["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command


@pytest.mark.parametrize("name", sorted(APP))
def test_app_settings(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    env = {k: v or "" for k, v in service["environment"].items()}
    unknown = set(env) - app_setting_names()
    assert not unknown, f"{name} sets variables the app never reads: {sorted(unknown)}"
    settings, _ = settings_from(env)
    assert settings.distributed and settings.storage_type == "s3"
    assert settings.effective_database_url.startswith("postgresql+asyncpg://")
    assert settings.host == "0.0.0.0"
    assert settings.s3.addressing_style == "path", "MinIO needs path-style addressing"
    assert settings.replicate_api_token, "the workers need a token (any, for the emulator)"
    if "stop_grace_period" in service:
        assert _seconds(service["stop_grace_period"]) > settings.shutdown_grace_s


# --- the health checks, run for real against local servers -----------------------------------


@pytest.fixture
def health_server() -> Iterator[tuple[int, Any]]:
    grpc = pytest.importorskip("grpc")
    health = pytest.importorskip("grpc_health.v1.health")
    health_pb2_grpc = pytest.importorskip("grpc_health.v1.health_pb2_grpc")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port, servicer
    server.stop(None)


def _run_check(test: list[str], old: str, new: str) -> int:
    assert test[0] == "CMD" and test[1] == "python"
    argv = [sys.executable, *(arg.replace(old, new) for arg in test[2:])]
    return subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode


@pytest.mark.parametrize(("name", "port"), [("api", 50051), ("worker", 50052)])
def test_grpc_health_check(
    compose: dict[str, Any], health_server: tuple[int, Any], name: str, port: int
) -> None:
    from grpc_health.v1 import health_pb2

    test = compose["services"][name]["healthcheck"]["test"]
    assert test[-1] == f"127.0.0.1:{port}"
    local, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert _run_check(test, f":{port}", f":{local}") == 0
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert _run_check(test, f":{port}", f":{local}") != 0


def test_gateway_health_check(compose: dict[str, Any]) -> None:
    status = {"code": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status["code"] if self.path == "/api/v1/health" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        test = compose["services"]["gateway"]["healthcheck"]["test"]
        local = f"127.0.0.1:{server.server_address[1]}"
        assert _run_check(test, "127.0.0.1:8080", local) == 0
        status["code"] = 503
        assert _run_check(test, "127.0.0.1:8080", local) != 0
    finally:
        server.shutdown()
        server.server_close()
