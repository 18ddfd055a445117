"""Real ``mediagen`` processes: the ``keys`` commands, the start-up rule of ``serve`` and
``api``, and the CLI's --api-key against a server that enforces keys."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import httpx

from tests.fixtures.processes import Cluster, Proc, free_port, wait_for_grpc_health, wait_for_http


def mediagen(
    cluster: Cluster, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mediagen", *args],
        env={**cluster.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _create(cluster: Cluster, env: Mapping[str, str], *args: str) -> tuple[str, str]:
    done = mediagen(cluster, "keys", "create", *args, env=env)
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    assert key.startswith("mg_") and "\n" not in key  # stdout is the key alone
    assert "cannot be shown again" in done.stderr and key not in done.stderr
    return key, key.split("_")[1]


def test_keys_create_list_revoke(cluster: Cluster, tmp_path: Path, database_url: str) -> None:
    # SQLite: the embedded default (a fresh data dir, migrated by the command); PostgreSQL:
    # DATABASE_URL (the session's database, emptied of keys by the fixture).
    env = {"MEDIAGEN_DATA_DIR": str(tmp_path / "data")}
    if not database_url.startswith("sqlite"):
        env["DATABASE_URL"] = database_url
    key, key_id = _create(cluster, env, "--tenant", "acme")
    viewer, viewer_id = _create(cluster, env, "--tenant", "acme", "--role", "viewer")
    secrets = [key.split("_", 2)[2], viewer.split("_", 2)[2]]

    listed = mediagen(cluster, "keys", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:-1]}
    assert rows[key_id][1:3] == ["acme", "tenant"] and rows[key_id][-1] == "-"
    assert rows[viewer_id][1:3] == ["acme", "viewer"]

    revoked = mediagen(cluster, "keys", "revoke", key_id, env=env)
    assert revoked.returncode == 0 and f"Revoked API key {key_id}" in revoked.stdout
    as_json = mediagen(cluster, "keys", "list", "--json", env=env)
    by_id = {k["id"]: k for k in json.loads(as_json.stdout)}
    assert by_id[key_id]["revoked"] and by_id[viewer_id]["revoked"] is None
    assert set(by_id[key_id]) == {"id", "tenant", "role", "created", "revoked"}

    for output in (listed.stdout, listed.stderr, as_json.stdout, revoked.stdout):
        assert not any(secret in output for secret in secrets)

    unknown = mediagen(cluster, "keys", "revoke", "0" * 12, env=env)
    assert unknown.returncode == 1 and "no API key has id" in unknown.stderr
    bad = mediagen(cluster, "keys", "create", "--tenant", "two words", env=env)
    assert bad.returncode == 2 and "invalid tenant" in bad.stderr


def _serve(cluster: Cluster, tmp_path: Path, name: str, **env: str) -> tuple[Proc, int, int]:
    grpc_port, http_port = free_port(), free_port()
    proc = cluster.start(
        name,
        "serve",
        env={
            "MEDIAGEN_DATA_DIR": str(tmp_path / "data"),
            "MEDIAGEN_GRPC_PORT": str(grpc_port),
            "MEDIAGEN_HTTP_PORT": str(http_port),
            "MEDIAGEN_EMULATOR_LATENCY_S": "0.5",
            **env,
        },
    )
    return proc, grpc_port, http_port


def test_serve_on_a_public_address_without_keys_refuses_to_start(
    cluster: Cluster, tmp_path: Path
) -> None:
    proc, _, _ = _serve(cluster, tmp_path, "public", MEDIAGEN_HOST="0.0.0.0")
    assert proc.popen.wait(60) != 0
    assert "refusing to listen on 0.0.0.0 without authentication" in proc.output()
    assert "mediagen keys create" in proc.output()


def test_api_on_a_public_address_without_keys_refuses_to_start(
    cluster: Cluster, tmp_path: Path
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'api.db'}"
    assert mediagen(cluster, "migrate", env={"DATABASE_URL": database_url}).returncode == 0
    proc = cluster.start(
        "api",
        "api",
        env={
            "MEDIAGEN_HOST": "0.0.0.0",
            "MEDIAGEN_GRPC_PORT": str(free_port()),
            "DATABASE_URL": database_url,
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "SECRET_KEY": "a-deployment-secret-not-the-public-one",
        },
    )
    assert proc.popen.wait(60) != 0
    assert "refusing to listen on 0.0.0.0" in proc.output()


def test_serve_on_loopback_without_keys_starts_open_and_says_so(
    cluster: Cluster, tmp_path: Path
) -> None:
    proc, grpc_port, http_port = _serve(cluster, tmp_path, "open")
    wait_for_grpc_health(f"127.0.0.1:{grpc_port}", proc)
    wait_for_http(f"http://127.0.0.1:{http_port}/api/v1/health", proc)
    assert httpx.get(f"http://127.0.0.1:{http_port}/api/v1/jobs", timeout=10).status_code == 200
    output = proc.output()
    assert "WITHOUT AUTHENTICATION" in output and "next starts" in output
    assert '"level": "WARNING", "logger": "mediagen.wiring", "message": "authentication open' in (
        output
    )


def test_a_server_with_keys_needs_one(cluster: Cluster, tmp_path: Path) -> None:
    env = {"MEDIAGEN_DATA_DIR": str(tmp_path / "data")}
    key, key_id = _create(cluster, env, "--tenant", "acme")
    proc, grpc_port, http_port = _serve(cluster, tmp_path, "secured", MEDIAGEN_AUTH_CACHE_S="0")
    target = f"127.0.0.1:{grpc_port}"
    wait_for_grpc_health(target, proc)
    client = ["--target", target, "--http-url", f"http://127.0.0.1:{http_port}"]

    refused = mediagen(cluster, *client, "jobs", "list")
    assert refused.returncode == 1 and "unauthenticated" in refused.stderr
    by_flag = mediagen(cluster, *client, "--api-key", key, "jobs", "list")
    assert by_flag.returncode == 0, by_flag.stderr
    out = tmp_path / "out"
    by_env = mediagen(
        cluster, *client, "generate", "a fox", "--out", str(out), env={"MEDIAGEN_API_KEY": key}
    )
    assert by_env.returncode == 0, by_env.stderr
    assert len(list(out.iterdir())) == 1  # the image came down through the gateway

    assert mediagen(cluster, "keys", "revoke", key_id, env=env).returncode == 0
    after = mediagen(cluster, *client, "--api-key", key, "jobs", "list")
    assert after.returncode == 1 and "revoked" in after.stderr

    wrong = httpx.get(f"http://127.0.0.1:{http_port}/api/v1/jobs", timeout=10)
    assert wrong.status_code == 401
    assert proc.stop() == 0
    output = proc.output()
    assert key_id in output  # refusals name the key by its id...
    assert key.split("_", 2)[2] not in output  # ...and never by its secret
    assert "WITHOUT AUTHENTICATION" not in output
