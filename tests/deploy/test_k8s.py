"""deploy/k8s: renders with kustomize, validates against the Kubernetes schemas (strict), and
holds together: probes on the ports the app serves, settings the app accepts, non-root pods."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mediagen.api.server import start_grpc_server
from mediagen.auth.startup import AuthMode, auth_mode, is_loopback
from mediagen.auth.store import KeyStore
from mediagen.config import ConfigError
from mediagen.embedded import Embedded
from mediagen.health.status import DOWN_AFTER
from mediagen.jobs.database import Database
from tests.deploy.support import (
    K8S_VERSIONS,
    ROLES,
    ROOT,
    app_setting_names,
    run,
    settings_from,
    tool,
)
from tests.fixtures.embedded import embedded_settings

Objects = list[dict[str, Any]]


def _one(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}"
    return found[0]


def _pod(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    pod: dict[str, Any] = _one(objects, kind, name)["spec"]["template"]["spec"]
    return pod


def _env(objects: Objects) -> dict[str, str]:
    config = _one(objects, "ConfigMap", "mediagen-config")["data"]
    secret = _one(objects, "Secret", "mediagen-secrets")["stringData"]
    return {**config, **secret}


def _grpc_service_name() -> str:
    proto = (ROOT / "proto/mediagen/v1/media_generation_service.proto").read_text()
    package = re.search(r"^package\s+([\w.]+);", proto, re.M)
    service = re.search(r"^service\s+(\w+)", proto, re.M)
    assert package and service
    return f"{package.group(1)}.{service.group(1)}"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_schemas(k8s_rendered: Path, version: str) -> None:
    run(
        tool("kubernetes-validate"),
        "--strict",
        "--quiet",
        "--kubernetes-version",
        version,
        str(k8s_rendered),
    )


def test_inventory(k8s_objects: Objects) -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in k8s_objects)
    for expected in [
        ("ConfigMap", "mediagen-config"),
        ("Secret", "mediagen-secrets"),
        ("Deployment", "mediagen-api"),
        ("Deployment", "mediagen-worker"),
        ("Deployment", "mediagen-gateway"),
        ("Service", "mediagen-api"),
        ("Service", "mediagen-gateway"),
        ("Job", "mediagen-migrate"),
        ("HorizontalPodAutoscaler", "mediagen-worker"),
        ("PodDisruptionBudget", "mediagen-api"),
        ("PodDisruptionBudget", "mediagen-worker"),
        ("PodDisruptionBudget", "mediagen-gateway"),
    ]:
        assert expected in kinds
    for obj in k8s_objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == "mediagen", obj["metadata"]["name"]


def test_secret_holds_only_placeholders(k8s_objects: Objects) -> None:
    secret = _one(k8s_objects, "Secret", "mediagen-secrets")
    assert "data" not in secret
    for key, value in secret["stringData"].items():
        assert "CHANGE-ME" in value, f"{key}: the committed Secret holds placeholders only"


def test_settings_are_accepted(k8s_objects: Objects) -> None:
    env = _env(k8s_objects)
    unknown = set(env) - app_setting_names()
    assert not unknown, f"variables the app never reads: {sorted(unknown)}"
    settings, _ = settings_from(env)
    assert settings.distributed and settings.storage_type == "s3"
    assert settings.effective_database_url.startswith("postgresql+asyncpg://")
    assert settings.host == "0.0.0.0"


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("Deployment", "mediagen-api"),
        ("Deployment", "mediagen-worker"),
        ("Deployment", "mediagen-gateway"),
        ("Job", "mediagen-migrate"),
    ],
)
def test_pods_are_locked_down(k8s_objects: Objects, kind: str, name: str) -> None:
    pod = _pod(k8s_objects, kind, name)
    images = {
        c["image"]
        for o in k8s_objects
        if o["kind"] in {"Deployment", "Job"}
        for c in o["spec"]["template"]["spec"]["containers"]
    }
    assert len(images) == 1, f"one image for every role, got {images}"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    settings, _ = settings_from(_env(k8s_objects))
    for container in pod["containers"]:
        assert container["args"][0] in ROLES
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][bound])
        assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/tmp"}
        refs = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
        assert refs == {"mediagen-config", "mediagen-secrets"}
    if kind == "Deployment":
        assert pod["terminationGracePeriodSeconds"] > settings.shutdown_grace_s + 5


def _container(objects: Objects, name: str) -> dict[str, Any]:
    containers: list[dict[str, Any]] = _pod(objects, "Deployment", name)["containers"]
    assert len(containers) == 1
    return containers[0]


def test_api_probes_are_native_grpc(k8s_objects: Objects) -> None:
    settings, _ = settings_from(_env(k8s_objects))
    api = _container(k8s_objects, "mediagen-api")
    assert api["args"] == ["api"]
    assert [p["containerPort"] for p in api["ports"]] == [settings.grpc_port, settings.metrics_port]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert api[probe]["grpc"]["port"] == settings.grpc_port
    assert api["readinessProbe"]["grpc"]["service"] == _grpc_service_name()
    service = _one(k8s_objects, "Service", "mediagen-api")
    assert service["spec"]["ports"][0]["port"] == settings.grpc_port
    assert (
        service["spec"]["selector"]
        == _one(k8s_objects, "Deployment", "mediagen-api")["spec"]["selector"]["matchLabels"]
    )


@pytest.mark.parametrize("name", ["mediagen-api", "mediagen-worker"])
def test_metrics_port_is_named_for_scraping(k8s_objects: Objects, name: str) -> None:
    """deploy/prometheus/prometheus-k8s.yml keeps the container ports named "metrics"."""
    settings, _ = settings_from(_env(k8s_objects))
    assert settings.metrics and settings.metrics_port > 0
    ports = {p["name"]: p["containerPort"] for p in _container(k8s_objects, name)["ports"]}
    assert ports["metrics"] == settings.metrics_port


def test_worker_probes_are_native_grpc(k8s_objects: Objects) -> None:
    settings, _ = settings_from(_env(k8s_objects))
    port = settings.worker_health_port
    worker = _container(k8s_objects, "mediagen-worker")
    assert worker["args"] == ["worker"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert worker[probe]["grpc"]["port"] == port
    hpa = _one(k8s_objects, "HorizontalPodAutoscaler", "mediagen-worker")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "mediagen-worker",
    }


def test_gateway_probes_and_target(k8s_objects: Objects) -> None:
    settings, _ = settings_from(_env(k8s_objects))
    gateway = _container(k8s_objects, "mediagen-gateway")
    assert gateway["args"] == ["gateway", "--grpc-target", f"mediagen-api:{settings.grpc_port}"]
    (port,) = gateway["ports"]
    assert port["containerPort"] == settings.http_port
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/api/v1/health"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert gateway[probe]["httpGet"]["port"] == port["name"]


#: Whether each probe passes while a dependency is down.
PROBES_PASS = [("startupProbe", True), ("livenessProbe", True), ("readinessProbe", False)]


async def test_a_dead_dependency_makes_pods_unready_not_restarted(
    k8s_objects: Objects, tmp_path: Path
) -> None:
    """Each probe of the manifests, asked of a real service whose storage is gone: readiness
    fails, startup and liveness pass (the API's port, a worker's health port, the gateway)."""
    app = Embedded(embedded_settings(tmp_path / "data", health_interval_s=60))
    await app.start()
    worker = None
    try:
        assert app.health is not None
        worker = await start_grpc_server("127.0.0.1", 0, servicer=None, checker=app.health)
        targets = {
            "mediagen-api": app.grpc_target,
            "mediagen-worker": f"127.0.0.1:{worker.port}",
        }
        media = app.settings.media_dir
        shutil.rmtree(media)
        media.write_bytes(b"")  # root ignores modes: a file where the directory was
        for _ in range(DOWN_AFTER):
            await app.health.check()
        for name, target in targets.items():
            container = _container(k8s_objects, name)
            for probe, serving in PROBES_PASS:
                status = await _grpc_health(target, container[probe]["grpc"].get("service", ""))
                assert (status == health_pb2.HealthCheckResponse.SERVING) is serving, (name, probe)
        gateway = _container(k8s_objects, "mediagen-gateway")
        async with httpx.AsyncClient(base_url=app.http_url, timeout=10) as http:
            for probe, ok in [
                ("startupProbe", True),
                ("livenessProbe", True),
                ("readinessProbe", False),
            ]:
                response = await http.get(gateway[probe]["httpGet"]["path"])
                assert (response.status_code == 200) is ok, (probe, response.text)
    finally:
        if worker is not None:
            await worker.stop(0)
        await app.stop()


async def _grpc_health(target: str, service: str) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
    return int(reply.status)


def test_disruption_budgets_match_pods(k8s_objects: Objects) -> None:
    for name in ("mediagen-api", "mediagen-worker", "mediagen-gateway"):
        pdb = _one(k8s_objects, "PodDisruptionBudget", name)
        labels = _one(k8s_objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_auth_is_on_and_the_webhook_is_a_public_https_url(k8s_objects: Objects) -> None:
    settings, _ = settings_from(_env(k8s_objects))
    assert settings.auth, "the API must require keys"
    webhook = urlsplit(settings.effective_webhook_url)
    assert webhook.scheme == "https" and webhook.path == "/webhooks/replicate"
    assert webhook.hostname and not is_loopback(webhook.hostname)
    assert webhook.hostname != "0.0.0.0", "the default (<public url>) would name the bind address"
    assert settings.output_hosts, "outputs come from configured hosts only"


def test_the_webhook_url_is_routed_to_the_gateways_over_tls(k8s_objects: Objects) -> None:
    """Replicate posts to MEDIAGEN_WEBHOOK_URL: an Ingress must carry exactly that host and path
    to the gateway Service's HTTP port, with a certificate for the host."""
    webhook = urlsplit(settings_from(_env(k8s_objects))[0].effective_webhook_url)
    ingress = _one(k8s_objects, "Ingress", "mediagen-webhooks")["spec"]
    assert any(webhook.hostname in tls["hosts"] for tls in ingress["tls"])
    routes = [
        (rule["host"], path["path"], path["backend"]["service"])
        for rule in ingress["rules"]
        for path in rule["http"]["paths"]
    ]
    assert routes == [
        (webhook.hostname, webhook.path, {"name": "mediagen-gateway", "port": {"name": "http"}})
    ]
    ports = _one(k8s_objects, "Service", "mediagen-gateway")["spec"]["ports"]
    assert "http" in {port["name"] for port in ports}


def test_the_documented_first_key_lets_the_api_start(k8s_objects: Objects, tmp_path: Path) -> None:
    """docs/distributed.md's first-key command, run as written (in a pod that starts without
    keys) against a fresh database: before it the API's start-up rule refuses, after it
    authentication is enforced."""
    text = (ROOT / "docs" / "distributed.md").read_text()
    found = re.search(
        r"kubectl -n mediagen exec deploy/([\w-]+) -- mediagen (keys create .+)", text
    )
    assert found, "docs/distributed.md shows how to create the first key"
    deployment, command = found.group(1), found.group(2).split()
    _one(k8s_objects, "Deployment", deployment)
    assert deployment != "mediagen-api", "the API cannot start before the first key exists"

    database_url = f"sqlite+aiosqlite:///{tmp_path / 'mediagen.db'}"
    env = {**_env(k8s_objects), "DATABASE_URL": database_url}
    settings, _ = settings_from(env)
    api_env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **env}
    key = run(sys.executable, "-m", "mediagen", *command, env=api_env).strip()
    assert key.startswith("mg_")

    async def active_keys() -> int:
        db = Database(database_url)
        try:
            return await KeyStore(db).count_active()
        finally:
            await db.dispose()

    assert asyncio.run(active_keys()) == 1
    mode = auth_mode(enabled=settings.auth, host=settings.host, active_keys=1)
    assert mode is AuthMode.ENFORCED
    with pytest.raises(ConfigError, match="no API keys"):
        auth_mode(enabled=settings.auth, host=settings.host, active_keys=0)
