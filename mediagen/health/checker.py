"""The periodic dependency check of one process: every probe once per interval, each bounded by
a timeout, folded by :mod:`mediagen.health.status`, published to grpc.health.v1 servicers and
to the ``mediagen_dependency_up`` gauge.

Checks are cheap and independent of traffic: a health Check or an HTTP health request reads
the latest result and never probes anything itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

from mediagen.health.servicer import NOT_SERVING, SERVING, HealthServicer
from mediagen.health.status import DOWN_AFTER, Component, ProbeResult, fold, ready
from mediagen.metrics import definitions as m
from mediagen.redaction import clean_upstream

log = logging.getLogger(__name__)

#: Raises when the dependency cannot be used right now; returns when it can.
Probe = Callable[[], Awaitable[None]]
#: Failure text kept per component for the log.
MAX_DETAIL_CHARS = 500


class HealthChecker:
    """Probe ``probes`` (by component name) every ``interval_s``, each within ``timeout_s``."""

    def __init__(
        self,
        probes: Mapping[str, Probe],
        *,
        interval_s: float,
        timeout_s: float,
        down_after: int = DOWN_AFTER,
    ) -> None:
        self._probes = dict(probes)
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._down_after = down_after
        #: The latest round, by name; replaced by each round, never changed in place.
        self.components: Mapping[str, Component] = {}
        self._targets: list[tuple[HealthServicer, tuple[str, ...]]] = []

    @property
    def ready(self) -> bool:
        return ready(self.components.values())

    async def attach(self, servicer: HealthServicer, names: Sequence[str]) -> None:
        """From now on ``names`` on ``servicer`` say whether this process is ready."""
        self._targets.append((servicer, tuple(names)))
        await self._publish(servicer, tuple(names))

    async def check(self) -> Mapping[str, Component]:
        """One round: every probe at once, then the verdict published."""
        results = await asyncio.gather(*(self._run(n, p) for n, p in self._probes.items()))
        components = fold(self.components, results, down_after=self._down_after)
        _log_changes(self.components, components)
        self.components = components
        for component in components.values():
            m.DEPENDENCY_UP.labels(component=component.name).set(1 if component.up else 0)
        for servicer, names in self._targets:
            await self._publish(servicer, names)
        return components

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[HealthChecker]:
        """The first round done, then one round per interval until the block ends."""
        await self.check()
        task = asyncio.create_task(self._every_interval(), name="health-checks")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.check()
            except Exception:  # a bug here must not end the checks (health would freeze)
                log.exception("health check round failed")

    async def _run(self, name: str, probe: Probe) -> ProbeResult:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout_s):
                await probe()
        except TimeoutError:
            error = detail = f"no answer within {self.timeout_s:g}s"
        except Exception as exc:  # whatever a probe raises, the dependency is not usable now
            # The health route is open to anyone who reaches it: the kind of failure only
            # there, the message (addresses, paths) in the log.
            error = type(exc).__name__
            detail = clean_upstream(f"{error}: {exc}", MAX_DETAIL_CHARS)
        else:
            return ProbeResult(name, ok=True, latency_s=time.monotonic() - started)
        latency_s = time.monotonic() - started
        return ProbeResult(name, ok=False, latency_s=latency_s, error=error, detail=detail)

    async def _publish(self, servicer: HealthServicer, names: tuple[str, ...]) -> None:
        servicer.publish(tuple(self.components.values()))
        status = SERVING if self.ready else NOT_SERVING
        for name in names:
            await servicer.set(name, status)


def _log_changes(before: Mapping[str, Component], after: Mapping[str, Component]) -> None:
    for name, now in after.items():
        was = before.get(name)
        if was is not None and was.up == now.up:
            continue
        if now.up:
            log.info("health: %s is up (%.1f ms)", name, now.latency_s * 1000)
        else:
            log.warning("health: %s is down: %s", name, now.detail or now.error)
