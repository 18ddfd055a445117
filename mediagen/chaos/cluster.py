"""The distributed deployment a chaos run stands up: PostgreSQL, Redis, storage, the Replicate
emulator, two ``mediagen api`` and N ``mediagen worker`` processes, all on loopback.

PostgreSQL and Redis are private to the run (started here, free to be stopped) unless URLs of
configured ones are given; those are only restarted by commands the caller supplies.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from mediagen.chaos.processes import (
    PrivatePostgres,
    PrivateRedis,
    Proc,
    ProcessGroup,
    StartupError,
    free_port,
    start_moto,
    wait_for_grpc_health,
    wait_for_http,
)
from mediagen.chaos.targets import require_loopback_url

#: The emulator's token (the emulator is ours; it only has to match).
TOKEN = "r8_chaos_run_token"


@dataclass(frozen=True)
class ClusterOptions:
    workers: int = 2
    storage: str = "local"  # local | s3 (a moto server of the run's own)
    lease_s: float = 6.0
    reconcile_interval_s: float = 1.0
    ambiguous_settle_s: float = 4.0  # no longer than the lease (docs/predictions.md)
    read_timeout_s: float = 2.0  # the workers' deadline for one Replicate answer
    worker_concurrency: int = 20
    max_attempts: int = 10
    idle_in_transaction_s: float = 4.0  # frees a frozen worker's locks before its lease ends
    #: Configured servers instead of private ones (loopback only), and the shell commands
    #: that stop and start them; without the commands they are never restarted.
    database_url: str | None = None
    redis_url: str | None = None
    postgres_stop_cmd: str | None = None
    postgres_start_cmd: str | None = None
    redis_stop_cmd: str | None = None
    redis_start_cmd: str | None = None
    workdir: Path | None = None  # logs and data; a temporary directory by default
    keep_workdir: bool = False
    apis: int = 2  # API processes (mediagen bench measures one)
    #: Settings that replace the run's own (``mediagen bench`` uses production timings).
    extra_env: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.storage not in ("local", "s3"):
            raise ValueError("storage must be local or s3")
        if not 1 <= self.workers <= 8:
            raise ValueError("workers must be 1 to 8 (the machine is shared)")
        if not 1 <= self.apis <= 2:
            raise ValueError("apis must be 1 or 2")
        for name in ("database_url", "redis_url"):
            url = getattr(self, name)
            if url is not None:
                require_loopback_url(url, name)


@dataclass
class Api:
    target: str
    proc: Proc


@dataclass
class Cluster:
    options: ClusterOptions
    root: Path
    group: ProcessGroup
    emulator_url: str = ""
    postgres: PrivatePostgres | None = None
    redis: PrivateRedis | None = None
    apis: list[Api] = field(default_factory=list)
    workers: list[Proc] = field(default_factory=list)
    _worker_ports: list[int] = field(default_factory=list)
    #: Starts that failed (and were tried again): a role that cannot start during an outage.
    failed_starts: list[str] = field(default_factory=list)

    @property
    def database_url(self) -> str:
        return self.group.env["DATABASE_URL"]

    @property
    def can_restart_postgres(self) -> bool:
        o = self.options
        return self.postgres is not None or bool(o.postgres_stop_cmd and o.postgres_start_cmd)

    @property
    def can_restart_redis(self) -> bool:
        o = self.options
        return self.redis is not None or bool(o.redis_stop_cmd and o.redis_start_cmd)

    # --- start ------------------------------------------------------------------------------

    @classmethod
    async def start(cls, options: ClusterOptions) -> Cluster:
        """Start everything; on failure stop what was started and raise."""
        root = options.workdir or Path(tempfile.mkdtemp(prefix="mediagen-chaos-"))
        (root / "logs").mkdir(parents=True, exist_ok=True)
        group = ProcessGroup(root / "logs", base_env())
        cluster = cls(options, root, group)
        try:
            await cluster._start_all()
        except BaseException:
            cluster.stop()  # in this thread: it must finish even when the run is cancelled
            raise
        return cluster

    async def _start_all(self) -> None:
        o = self.options
        env = self.group.env
        if o.database_url is None:
            if not PrivatePostgres.available():
                raise StartupError("initdb/pg_ctl not found: install PostgreSQL or pass a URL")
            # Its own directory: the server's account must be able to enter it.
            self.postgres = PrivatePostgres(Path(tempfile.mkdtemp(prefix="mediagen-chaos-pg-")))
            await asyncio.to_thread(self.postgres.create)
            await asyncio.to_thread(self.postgres.start)
        if o.redis_url is None:
            if not PrivateRedis.available():
                raise StartupError("redis-server not found: install Redis or pass a URL")
            self.redis = PrivateRedis(self.group, self.root / "redis")
            await self.redis.start()
        emulator_port = free_port()
        self.emulator_url = f"http://127.0.0.1:{emulator_port}"
        env |= {
            "SECRET_KEY": secrets.token_hex(32),
            "DATABASE_URL": o.database_url or (self.postgres.url if self.postgres else ""),
            "REDIS_URL": o.redis_url or (self.redis.url if self.redis else ""),
            "MEDIAGEN_QUEUE_NAME": f"mediagen-chaos-{uuid.uuid4().hex[:8]}",
            "MEDIAGEN_DATA_DIR": str(self.root / "data"),
            "REPLICATE_API_TOKEN": TOKEN,
            "REPLICATE_BASE_URL": self.emulator_url,
            "MEDIAGEN_EMULATOR_PORT": str(emulator_port),
            "MEDIAGEN_EMULATOR_LATENCY_S": "1.5",
            # The emulator's files are on loopback: allowed by this exact entry only.
            "MEDIAGEN_OUTPUT_HOSTS": f"127.0.0.1:{emulator_port}",
            "MEDIAGEN_LEASE_S": str(o.lease_s),
            "MEDIAGEN_RECONCILE_INTERVAL_S": str(o.reconcile_interval_s),
            "MEDIAGEN_AMBIGUOUS_SETTLE_S": str(o.ambiguous_settle_s),
            "MEDIAGEN_PROVIDER_READ_TIMEOUT_S": str(o.read_timeout_s),
            "MEDIAGEN_WORKER_CONCURRENCY": str(o.worker_concurrency),
            "MEDIAGEN_MAX_ATTEMPTS": str(o.max_attempts),
            "MEDIAGEN_DB_IDLE_IN_TRANSACTION_TIMEOUT_S": str(o.idle_in_transaction_s),
            "MEDIAGEN_DB_LOCK_TIMEOUT_S": "2",
            "MEDIAGEN_DB_POOL_SIZE": "4",
            "MEDIAGEN_DB_MAX_OVERFLOW": "4",
            "MEDIAGEN_POLL_INTERVAL_S": "0.2",
            "MEDIAGEN_POLL_INTERVAL_MAX_S": "0.5",
            "MEDIAGEN_RETRY_BASE_S": "0.2",
            "MEDIAGEN_RETRY_MAX_S": "1",
            "MEDIAGEN_SHUTDOWN_GRACE_S": "1",
            "MEDIAGEN_LOG_LEVEL": "INFO",
        } | dict(o.extra_env)
        if o.storage == "s3":
            env |= {
                "STORAGE_TYPE": "s3",
                "S3_ENDPOINT_URL": await start_moto(self.group),
                "S3_BUCKET_NAME": f"chaos-{uuid.uuid4().hex[:12]}",
                "S3_ACCESS_KEY_ID": "testing",
                "S3_SECRET_ACCESS_KEY": "testing",
                "S3_ADDRESSING_STYLE": "path",
                "S3_CREATE_BUCKET": "true",
            }
        migrate = self.group.start_mediagen("migrate", "migrate")
        if await asyncio.to_thread(migrate.popen.wait, 120) != 0:
            raise StartupError(f"mediagen migrate failed:\n{migrate.tail()}")
        emulator = self.group.start_mediagen("emulator", "emulator")
        await wait_for_http(f"{self.emulator_url}/_emulator/health", emulator)
        for i in range(o.apis):
            port = free_port()
            self.apis.append(Api(f"127.0.0.1:{port}", await self._start_api(i, port)))
        self._worker_ports = [free_port() for _ in range(o.workers)]
        self.workers = [await self._start_worker(i) for i in range(o.workers)]

    async def _start_api(self, i: int, port: int) -> Proc:
        return await self._start_role(f"api{i}", "api", {"MEDIAGEN_GRPC_PORT": str(port)}, port)

    async def _start_worker(self, i: int) -> Proc:
        port = self._worker_ports[i]
        env = {"MEDIAGEN_WORKER_HEALTH_PORT": str(port)}
        return await self._start_role(f"worker{i}", "worker", env, port)

    async def _start_role(self, name: str, role: str, env: dict[str, str], port: int) -> Proc:
        """Start a role and wait until it is healthy; one that exits at start (its database
        is down, say) is started again, as an orchestrator would, for at most a minute."""
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            proc = self.group.start_mediagen(name, role, env=env)
            try:
                await wait_for_grpc_health(f"127.0.0.1:{port}", proc)
                return proc
            except StartupError:
                proc.stop()
                self.failed_starts.append(f"{name} (pid {proc.pid}) {proc.popen.returncode}")
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(1)

    # --- disruptions' tools -----------------------------------------------------------------

    async def restart_api(self, i: int) -> None:
        """Start API ``i`` again on its port (after it was killed)."""
        api = self.apis[i]
        await asyncio.to_thread(api.proc.stop)
        api.proc = await self._start_api(i, int(api.target.rsplit(":", 1)[1]))

    async def replace_worker(self, i: int) -> None:
        """Start a new worker in place of worker ``i`` (which must be gone)."""
        self.workers[i] = await self._start_worker(i)

    async def stop_postgres(self, mode: str = "fast") -> None:
        if self.postgres is not None:
            await asyncio.to_thread(self.postgres.stop, mode)
        else:
            await _shell(self.options.postgres_stop_cmd)

    async def start_postgres(self) -> None:
        if self.postgres is not None:
            await asyncio.to_thread(self.postgres.start)
        else:
            await _shell(self.options.postgres_start_cmd)

    async def stop_redis(self) -> None:
        if self.redis is not None:
            await asyncio.to_thread(self.redis.stop)
        else:
            await _shell(self.options.redis_stop_cmd)

    async def start_redis(self) -> None:
        if self.redis is not None:
            await self.redis.start()
        else:
            await _shell(self.options.redis_start_cmd)

    def exited_by_themselves(self) -> list[str]:
        """API and worker processes that ended without the run ending them, each told once
        (a worker that died of an outage and was then replaced by a kill still counts)."""
        found = []
        for proc in self.group.procs:
            if proc.name.startswith(("api", "worker")) and not proc.alive():
                if not proc.ended_on_purpose:
                    found.append(f"{proc.name} (pid {proc.pid}) exited ({proc.popen.returncode})")
                proc.ended_on_purpose = True
        return found

    # --- stop -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every process the run started, by PID, and remove the private servers."""
        self.group.stop_all()
        if self.postgres is not None:
            self.postgres.destroy()
        if not self.options.keep_workdir and self.options.workdir is None:
            subprocess.run(["rm", "-rf", str(self.root)], check=False)


def base_env() -> dict[str, str]:
    """This process's environment without any setting of the service (the run sets its own)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MEDIAGEN_", "S3_", "REPLICATE_"))
        and key not in {"DATABASE_URL", "REDIS_URL", "STORAGE_TYPE", "SECRET_KEY"}
    }
    return env | {"PYTHONUNBUFFERED": "1", "GRPC_VERBOSITY": "ERROR"}


async def _shell(command: str | None) -> None:
    if not command:
        raise RuntimeError("no command given to restart a configured server")
    process = await asyncio.create_subprocess_shell(command)
    if await process.wait() != 0:
        raise RuntimeError(f"{command!r} exited with {process.returncode}")
