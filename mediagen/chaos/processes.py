"""The processes a chaos run starts and abuses, each controlled by its own PID.

:class:`ProcessGroup` starts ``mediagen`` roles (and any other command) with their output in a
log file and stops every one of them at the end, also after a failure or Ctrl-C. Private
PostgreSQL (``initdb``/``pg_ctl`` in a temporary directory) and Redis (``redis-server`` without
persistence) run on free loopback ports, so stopping them touches nobody else's data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mediagen.health.servicer import LIVENESS

#: Longest wait for a started server to answer.
STARTUP_TIMEOUT_S = 60.0


class StartupError(RuntimeError):
    """A process did not come up; the message holds the end of its log."""


def free_port() -> int:
    """A loopback TCP port nobody listens on right now. Picked below the kernel's ephemeral range
    (32768 and up on Linux), so a process that binds port 0 before ours is started cannot be
    handed the same one."""
    for _ in range(200):
        port = random.randint(20_000, 32_000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port between 20000 and 32000")


@dataclass
class Proc:
    """One started process; its output goes to ``log``."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    ended_on_purpose: bool = False  # the run killed or stopped it (any other exit is a finding)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: no cleanup, no lease released, exactly like a crash."""
        if self.alive():  # one already dead ended by itself, and stays a finding
            self.ended_on_purpose = True
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def pause(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGCONT)

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM (after SIGCONT: a stopped process cannot act on it), then SIGKILL."""
        if not self.alive():
            return
        self.ended_on_purpose = True
        self.popen.send_signal(signal.SIGCONT)
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)


@dataclass
class ProcessGroup:
    """Processes sharing one environment and one log folder."""

    logs: Path
    env: dict[str, str]
    procs: list[Proc] = field(default_factory=list)

    def start(
        self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None
    ) -> Proc:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:  # the child keeps its own descriptor
            popen = subprocess.Popen(
                list(argv),
                env={**self.env, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C reaches the run, which stops them itself
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def start_mediagen(self, name: str, *args: str, env: Mapping[str, str] | None = None) -> Proc:
        return self.start(name, [sys.executable, "-m", "mediagen", *args], env=env)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop()


async def wait_for_http(url: str, proc: Proc, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if not proc.alive():
                raise StartupError(f"{proc.name} exited:\n{proc.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code < 500:
                    return
            await asyncio.sleep(0.2)
    raise StartupError(f"{proc.name} not answering in {timeout_s:g}s:\n{proc.tail()}")


async def wait_for_grpc_health(
    target: str, proc: Proc, timeout_s: float = STARTUP_TIMEOUT_S
) -> None:
    """Until the process is started: its liveness (as a startup probe asks), not readiness,
    which a database or Redis outage the run causes may hold back."""
    deadline = time.monotonic() + timeout_s
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if not proc.alive():
                raise StartupError(f"{proc.name} exited:\n{proc.tail()}")
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=LIVENESS), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            await asyncio.sleep(0.2)
    raise StartupError(f"{proc.name} not healthy in {timeout_s:g}s:\n{proc.tail()}")


# --- PostgreSQL ---------------------------------------------------------------------------------


def _as_server_user() -> list[str]:
    # PostgreSQL refuses to run as root; under root it runs as the ``postgres`` account.
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class PrivatePostgres:
    """A PostgreSQL server in a temporary directory, TCP on a free loopback port, trust auth."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()

    @classmethod
    def available(cls) -> bool:
        return shutil.which("initdb") is not None and shutil.which("pg_ctl") is not None

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self.root, account.pw_uid, account.pw_gid)
        self._run("initdb", "-D", str(self.root / "data"), "-A", "trust", "-U", "postgres", "-N")

    def start(self) -> None:
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": "",
            "fsync": "off",
            "max_connections": "200",
        }
        opts = " ".join(f"-c {name}={value!r}" for name, value in options.items())
        self._run(
            "pg_ctl", "-D", str(self.root / "data"), "-l", str(self.root / "server.log"),
            "-o", opts, "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        status = subprocess.run(
            [*_as_server_user(), "pg_ctl", "-D", str(self.root / "data"), "status"],
            capture_output=True,
            check=False,
        )
        return status.returncode == 0

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            if self.running():
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            [*_as_server_user(), *args], capture_output=True, text=True, check=False, timeout=90
        )
        if result.returncode != 0:
            raise StartupError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")


# --- Redis ------------------------------------------------------------------------------------


class PrivateRedis:
    """A ``redis-server`` of this run alone, without persistence: a restart starts it empty."""

    def __init__(self, group: ProcessGroup, workdir: Path) -> None:
        self.group = group
        self.workdir = workdir
        self.port = free_port()
        self.proc: Proc | None = None

    @classmethod
    def available(cls) -> bool:
        return shutil.which("redis-server") is not None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            shutil.which("redis-server") or "redis-server",
            "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self.workdir),
        ]  # fmt: skip
        self.proc = self.group.start("redis", argv)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise StartupError(f"redis-server exited:\n{self.proc.tail()}")
            with contextlib.suppress(OSError):
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(b"PING\r\n")
                answer = await reader.readline()
                writer.close()
                if answer.startswith(b"+PONG"):
                    return
            await asyncio.sleep(0.05)
        raise StartupError("redis-server did not answer")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None


# --- S3 ---------------------------------------------------------------------------------------


async def start_moto(group: ProcessGroup) -> str:
    """An S3 server (moto) on a free loopback port; its URL."""
    port = free_port()
    proc = group.start(
        "s3", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    )
    url = f"http://127.0.0.1:{port}"
    await wait_for_http(f"{url}/moto-api/", proc)
    return url
