"""One worker's lifecycle, the same in ``mediagen serve`` and ``mediagen worker``.

Start: the job runner (registered as the queue task's handler as soon as this is built, so no
wake-up finds the process without one), the health port if asked for, a reconciler sweep (the
queue may have lost every message while no worker ran), the periodic reconciler and retention
pass, and consuming the Redis stream (the in-process queue needs no consumer: it runs each task
where it is sent).

While it runs: if Redis becomes unreachable the stream reader reconnects by itself, and a
sweep re-sends the wake-ups Redis lost once it is back; health (the ``checker``'s probes of the
database, Redis and storage) says NOT_SERVING meanwhile. In-flight jobs go on throughout: the
database is the truth.

Stop, within one grace period (``MEDIAGEN_SHUTDOWN_GRACE_S``): health NOT_SERVING, take no
more messages, let running attempts finish, hand the rest back, close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from taskiq import InMemoryBroker
from taskiq.receiver import Receiver

from mediagen.api.server import GrpcServer, start_grpc_server
from mediagen.health.checker import HealthChecker
from mediagen.wiring import Core, build_reconciler, build_retention, build_runner
from mediagen.worker.redis_stream import ResilientStreamBroker
from mediagen.worker.runner import HAND_BACK_S, JobRunner

log = logging.getLogger(__name__)

#: Pause before starting a queue consumer again after it failed.
RESTART_CONSUMER_S = 1.0


class WorkerService:
    """Build, then :meth:`start` and :meth:`stop` (idempotent, also after a failed start)."""

    def __init__(
        self,
        core: Core,
        *,
        health_port: int | None = None,
        checker: HealthChecker | None = None,
    ) -> None:
        self.core = core
        self.settings = core.settings
        self.runner: JobRunner
        self.runner, self._provider = build_runner(core)
        self.reconciler = build_reconciler(core)
        self.retention = build_retention(core)
        self._health_port = health_port
        self._checker = checker
        self.health: GrpcServer | None = None
        self._finish = asyncio.Event()
        self._listening: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopped = False

    @property
    def owner(self) -> str:
        """The lease owner name of this worker's claims."""
        return self.runner.owner

    @property
    def health_port(self) -> int | None:
        return self.health.port if self.health is not None else None

    async def start(self) -> None:
        settings = self.settings
        if self._health_port is not None:
            self.health = await start_grpc_server(
                settings.host, self._health_port, servicer=None, checker=self._checker
            )
        await self._sweep()
        self._spawn(self.reconciler.run_forever(), "reconciler")
        if self.retention is not None:
            self._spawn(self.retention.run_forever(), "retention")
        broker = self.core.broker
        if isinstance(broker, ResilientStreamBroker):
            broker.on_state = self._queue_state
        if not isinstance(broker, InMemoryBroker):
            self._listening = asyncio.create_task(self._consume(), name="consume")

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.health is not None:
            await self.health.health.enter_graceful_shutdown()
        self._finish.set()
        await self.runner.drain(self.settings.shutdown_grace_s)
        if self._listening is not None:
            await self._stop_listening(self._listening)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.health is not None:
            await self.health.server.stop(0)
        await self._provider.close()

    async def _consume(self) -> None:
        """Run taskiq's receiver until stopped. The broker rides out Redis itself; anything
        else that ends the receiver is logged and the receiver started again, so the process
        never keeps running without consuming."""
        while not self._finish.is_set():
            receiver = Receiver(
                self.core.broker,
                max_async_tasks=self.settings.worker_concurrency,
                run_startup=False,
                wait_tasks_timeout=self.settings.shutdown_grace_s,
            )
            try:
                await receiver.listen(self._finish)
            except Exception:  # a bug or a broker error: keep the worker consuming
                log.exception("queue consumer failed; starting it again")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._finish.wait(), RESTART_CONSUMER_S)

    async def _stop_listening(self, listening: asyncio.Task[None]) -> None:
        # The receiver stops fetching at once and waits for its tasks, which the drain ended.
        done, _ = await asyncio.wait({listening}, timeout=HAND_BACK_S)
        if not done:
            listening.cancel()
            await asyncio.wait({listening}, timeout=HAND_BACK_S)
        if listening.done() and not listening.cancelled() and listening.exception() is not None:
            log.warning("queue consumer ended with an error: %r", listening.exception())

    # ---- queue reachability -----------------------------------------------------------------

    def _queue_state(self, available: bool) -> None:
        """The stream reader lost or found Redis again (or recreated its consumer group)."""
        if available:
            self._spawn(self._sweep(), "sweep")

    async def _sweep(self) -> None:
        try:
            sent = await self.reconciler.sweep()
        except Exception as exc:  # the periodic pass tries again
            log.warning("reconciler sweep failed: %s", exc)
            return
        log.debug("reconciler sweep woke %d job(s)", sent)

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
