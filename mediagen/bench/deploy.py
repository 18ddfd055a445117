"""The deployment a bench run measures: one it starts on loopback (embedded: one ``mediagen
serve``; distributed: :class:`mediagen.chaos.cluster.Cluster` with one API, and a ``mediagen
gateway``), or one already running at a target, whose processes are those named by PID.

Distributed, completion webhooks are on by default, as in production (where Replicate's are the
only way to hold thousands of predictions in flight within 3,000 requests a minute): the
emulator posts them to the gateway's ``/webhooks/replicate`` (``MEDIAGEN_WEBHOOK_URL``), which
wakes the workers through Redis, and polling slows to its fallback. Off, the emulator drops
every webhook, as Replicate's would go nowhere without a public URL, and workers poll only.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from mediagen.bench.options import DEPLOY_KINDS
from mediagen.chaos.cluster import TOKEN, Cluster, ClusterOptions, base_env
from mediagen.chaos.processes import (
    ProcessGroup,
    free_port,
    wait_for_grpc_health,
    wait_for_http,
)
from mediagen.config import Settings

#: The production defaults of what the chaos cluster tunes for fast failure detection: a bench
#: measures the service as it is configured by default.
_DEFAULTS = Settings()
PRODUCTION_TIMINGS: Mapping[str, str] = {
    "MEDIAGEN_LEASE_S": str(_DEFAULTS.lease_s),
    "MEDIAGEN_RECONCILE_INTERVAL_S": str(_DEFAULTS.reconcile_interval_s),
    "MEDIAGEN_AMBIGUOUS_SETTLE_S": str(_DEFAULTS.ambiguous_settle_s),
    "MEDIAGEN_PROVIDER_READ_TIMEOUT_S": str(_DEFAULTS.provider_read_timeout_s),
    "MEDIAGEN_WORKER_CONCURRENCY": str(_DEFAULTS.worker_concurrency),
    "MEDIAGEN_MAX_ATTEMPTS": str(_DEFAULTS.max_attempts),
    "MEDIAGEN_DB_IDLE_IN_TRANSACTION_TIMEOUT_S": str(_DEFAULTS.db_idle_in_transaction_timeout_s),
    "MEDIAGEN_DB_LOCK_TIMEOUT_S": str(_DEFAULTS.db_lock_timeout_s),
    "MEDIAGEN_DB_POOL_SIZE": str(_DEFAULTS.db_pool_size),
    "MEDIAGEN_DB_MAX_OVERFLOW": str(_DEFAULTS.db_max_overflow),
    "MEDIAGEN_POLL_INTERVAL_S": str(_DEFAULTS.poll_interval_s),
    "MEDIAGEN_POLL_INTERVAL_MAX_S": str(_DEFAULTS.poll_interval_max_s),
    "MEDIAGEN_RETRY_BASE_S": str(_DEFAULTS.retry_base_s),
    "MEDIAGEN_RETRY_MAX_S": str(_DEFAULTS.retry_max_s),
    "MEDIAGEN_SHUTDOWN_GRACE_S": "2",  # only the end of the run waits for it
    "MEDIAGEN_LOG_LEVEL": "WARNING",  # a line per job would be part of what is measured
}


@dataclass(frozen=True)
class DeployOptions:
    kind: str = "embedded"  # embedded | distributed
    workers: int = 1  # distributed only
    storage: str = "local"  # local | s3 (distributed: a moto server of the run's own)
    webhooks: bool = True  # distributed only: completion webhooks reach a gateway, or none come
    env: Mapping[str, str] = field(default_factory=dict)  # the scenario's settings

    def __post_init__(self) -> None:
        if self.kind not in DEPLOY_KINDS:
            raise ValueError(f"deployment must be one of {', '.join(DEPLOY_KINDS)}")
        if self.kind == "embedded" and self.storage != "local":
            raise ValueError("the embedded deployment stores files locally")


@dataclass(frozen=True)
class Deployment:
    kind: str  # embedded | distributed | target
    target: str  # the gRPC API measured
    processes: Mapping[str, int]  # name -> PID of every process measured
    emulator_url: str | None = None  # its /_emulator/stats counts provider requests
    api_key: str | None = None
    trees: tuple[str, ...] = ()  # processes measured with their children (PostgreSQL)
    webhooks: bool | None = None  # completion webhooks arrive; None: as the target runs
    provider_token: str | None = None  # the emulator's token, to list its predictions


@asynccontextmanager
async def deployed(options: DeployOptions) -> AsyncIterator[Deployment]:
    """Start a private deployment, yield it, and stop every process it started."""
    env = {**PRODUCTION_TIMINGS, **options.env}
    if options.kind == "embedded":
        async with _embedded(env) as deployment:
            yield deployment
        return
    http_port = free_port()
    if options.webhooks:
        # Workers put it in every create; the emulator posts there (loopback is allowed).
        env["MEDIAGEN_WEBHOOK_URL"] = f"http://127.0.0.1:{http_port}/webhooks/replicate"
    cluster = await Cluster.start(
        ClusterOptions(
            workers=options.workers,
            storage=options.storage,
            apis=1,
            lease_s=float(env["MEDIAGEN_LEASE_S"]),
            extra_env=tuple(env.items()),
        )
    )
    try:
        api = cluster.apis[0]
        pids = {"api": api.proc.pid}
        if options.webhooks:
            gateway = cluster.group.start_mediagen(
                "gateway", "gateway", "--grpc-target", api.target,
                env={"MEDIAGEN_HTTP_PORT": str(http_port)},
            )  # fmt: skip
            await wait_for_http(f"http://127.0.0.1:{http_port}/api/v1/health", gateway)
            pids["gateway"] = gateway.pid
        else:
            await _drop_webhooks(cluster.emulator_url)
        pids |= {f"worker{i}": proc.pid for i, proc in enumerate(cluster.workers)}
        pids |= {
            p.name: p.pid for p in cluster.group.procs if p.name in ("emulator", "redis", "s3")
        }
        trees: tuple[str, ...] = ()
        if cluster.postgres is not None:
            pids["postgres"] = _postmaster_pid(cluster.postgres.root / "data")
            trees = ("postgres",)
        yield Deployment(
            "distributed",
            api.target,
            pids,
            cluster.emulator_url,
            trees=trees,
            webhooks=options.webhooks,
            provider_token=TOKEN,
        )
    finally:
        await asyncio.to_thread(cluster.stop)


async def _drop_webhooks(emulator_url: str) -> None:
    """Have the emulator send no completion webhook at all (a rule for every prediction)."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        rule = {"kind": "webhook", "action": "drop", "times": None}
        reply = await client.post(f"{emulator_url}/_emulator/faults", json=rule)
        reply.raise_for_status()


@asynccontextmanager
async def _embedded(env: Mapping[str, str]) -> AsyncIterator[Deployment]:
    root = Path(tempfile.mkdtemp(prefix="mediagen-bench-"))
    (root / "logs").mkdir()
    group = ProcessGroup(root / "logs", base_env())
    grpc_port, emulator_port = free_port(), free_port()
    settings = {
        **env,
        "MEDIAGEN_HOST": "127.0.0.1",
        "MEDIAGEN_GRPC_PORT": str(grpc_port),
        "MEDIAGEN_HTTP_PORT": str(free_port()),
        "MEDIAGEN_EMULATOR_PORT": str(emulator_port),
        "MEDIAGEN_DATA_DIR": str(root / "data"),
    }
    try:
        proc = group.start_mediagen("serve", "serve", env=settings)
        target = f"127.0.0.1:{grpc_port}"
        await wait_for_grpc_health(target, proc)
        yield Deployment(
            "embedded", target, {"serve": proc.pid}, f"http://127.0.0.1:{emulator_port}"
        )
    finally:
        await asyncio.to_thread(group.stop_all)
        shutil.rmtree(root, ignore_errors=True)


def _postmaster_pid(data_dir: Path) -> int:
    """The server's PID: the first line of ``postmaster.pid`` in its data directory."""
    return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])


def attached(
    target: str, pids: Mapping[str, int], emulator_url: str | None, api_key: str | None
) -> Deployment:
    """A deployment already running at ``target`` (checked to be loopback by the caller)."""
    return Deployment("target", target, dict(pids), emulator_url, api_key)
