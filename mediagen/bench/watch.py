"""``watch``: WatchJob streams, open and idle, then live. With the worker taking one job at a
time, a long "blocker" job is started first and ``--jobs`` jobs queue behind it; ``--streams``
streams are opened over them (round robin, at most 100 opening at once), measured for
``--idle-s`` while nothing happens (after as long without any stream, for comparison), and
then the blocker is cancelled: the queued jobs run, and every event that reaches a stream
is timed from the server's event time to its arrival here.

The idle phase relies on the worker concurrency of 1 this scenario deploys with; against a
``--target`` the watched jobs may already be running while the streams are "idle".
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace

import grpc

from mediagen.bench.calls import CALL_TIMEOUT_S, Metadata, Stub, job_request, metadata_for
from mediagen.bench.deploy import Deployment
from mediagen.bench.measure import Measured, measured, opened
from mediagen.bench.options import BenchOptions
from mediagen.bench.report import BenchReport, Check, below
from mediagen.bench.stats import latency
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb

STREAMS_PER_CHANNEL = 100  # each channel its own connection, as many clients would be
BLOCKER_SECONDS = 3600.0  # the emulator's longest; the blocker is cancelled long before
API_NAMES = ("api", "serve")
SETTLE_S = 1.0
OPENING = 100
_TERMINAL = (job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELED)


def deploy_env(options: BenchOptions) -> Mapping[str, str]:
    return {"MEDIAGEN_WORKER_CONCURRENCY": "1"}


@dataclass
class Streams:
    """What every stream saw."""

    expected: int
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    open_s: list[float] = field(default_factory=list)  # call -> first event
    live_s: list[float] = field(default_factory=list)  # event time -> arrival, after release
    errors: Counter[str] = field(default_factory=Counter)
    ended: int = 0  # streams that ended with their job's final event
    release_at: float = float("inf")  # time.time() when the blocker was cancelled
    notes: list[str] = field(default_factory=list)
    #: Streams being opened at once: clients arrive over time, not all in one instant.
    opening: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(OPENING))

    def answered(self, open_s: float | None = None, error: str | None = None) -> None:
        """A stream's first event (after ``open_s``), or its error before any."""
        if open_s is not None:
            self.open_s.append(open_s)
        if error is not None:
            self.errors[error] += 1
        if len(self.open_s) + sum(self.errors.values()) >= self.expected:
            self.opened.set()


async def _follow(stub: Stub, job_id: str, metadata: Metadata, out: Streams) -> None:
    await out.opening.acquire()
    began = time.perf_counter()
    first = True
    try:
        async for reply in stub.WatchJob(pb.WatchJobRequest(id=job_id), metadata=metadata):
            arrived = time.time()
            if first:
                first = False
                out.opening.release()
                out.answered(open_s=time.perf_counter() - began)
            sent = reply.event.time.ToNanoseconds() / 1e9
            if sent >= out.release_at:
                out.live_s.append(arrived - sent)
            if reply.event.job.status in _TERMINAL:
                out.ended += 1
    except grpc.aio.AioRpcError as exc:
        if first:
            out.opening.release()
            out.answered(error=exc.code().name)
        else:
            out.errors[exc.code().name] += 1


async def _within(waiting: Awaitable[object], seconds: float) -> bool:
    """Whether ``waiting`` finished within ``seconds``; a phase that did not is reported, not
    raised, so the figures of a run that overloads the deployment are not lost."""
    try:
        await asyncio.wait_for(waiting, seconds)
    except TimeoutError:
        return False
    return True


async def _submit(stub: Stub, request: pb.GenerateMediaRequest, metadata: Metadata) -> str:
    reply = await stub.GenerateMedia(request, timeout=CALL_TIMEOUT_S, metadata=metadata)
    return reply.job.id


async def _wait_running(stub: Stub, job_id: str, metadata: Metadata, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    request = pb.GetJobRequest(id=job_id)
    while time.monotonic() < deadline:
        reply = await stub.GetJob(request, timeout=CALL_TIMEOUT_S, metadata=metadata)
        if reply.job.status == job_pb2.JOB_STATE_RUNNING:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"the blocker job {job_id} did not start in {timeout_s:g}s")


async def _channels(stack: AsyncExitStack, target: str, streams: int) -> Sequence[Stub]:
    stubs = []
    for _ in range(-(-streams // STREAMS_PER_CHANNEL)):
        channel = grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        stubs.append(Stub(await stack.enter_async_context(channel)))
    return stubs


async def run(deployment: Deployment, options: BenchOptions) -> BenchReport:
    metadata = metadata_for(deployment.api_key)
    out = Streams(expected=options.streams)
    async with opened(deployment) as stub, AsyncExitStack() as stack:
        blocker_request = job_request("a blocker", latency_s=BLOCKER_SECONDS)
        blocker = await _submit(stub, blocker_request, metadata)
        await _wait_running(stub, blocker, metadata, options.seconds)
        request = job_request("a watched bench fox", latency_s=options.job_seconds)
        ids = [await _submit(stub, request, metadata) for _ in range(options.jobs)]
        stubs = await _channels(stack, deployment.target, options.streams)
        async with measured(deployment) as quiet:  # the same deployment without streams
            await asyncio.sleep(options.idle_s)
        followers = [
            asyncio.create_task(
                _follow(stubs[i // STREAMS_PER_CHANNEL], ids[i % len(ids)], metadata, out)
            )
            for i in range(options.streams)
        ]
        try:
            if not await _within(out.opened.wait(), options.seconds):
                out.notes.append(f"{len(out.open_s)} streams open after {options.seconds:g}s")
            await asyncio.sleep(min(SETTLE_S, options.idle_s))  # the last opens finish
            async with measured(deployment) as idle:
                await asyncio.sleep(options.idle_s)
            out.release_at = time.time()
            async with measured(deployment) as live:
                cancel = pb.CancelJobRequest(id=blocker)
                await stub.CancelJob(cancel, timeout=CALL_TIMEOUT_S, metadata=metadata)
                if not await _within(asyncio.gather(*followers), options.seconds):
                    out.notes.append(
                        f"{out.ended} streams ended {options.seconds:g}s after release"
                    )
        finally:
            for task in followers:
                task.cancel()
            await asyncio.gather(*followers, return_exceptions=True)
    return _report(deployment, options, out, (quiet, idle, live))


def _report(
    deployment: Deployment,
    options: BenchOptions,
    out: Streams,
    phases: tuple[Measured, Measured, Measured],
) -> BenchReport:
    quiet, idle, live = phases
    errors = sum(out.errors.values())
    events = latency(out.live_s)
    bound_ms = 10.0 if options.streams <= 100 else 100.0
    checks: list[Check] = [
        below("stream errors = 0", errors, 1),
        below("streams not ended = 0", options.streams - out.ended, 1),
        below(f"event -> client p99 < {bound_ms:g} ms", events.p99_ms, bound_ms),
    ]
    api = idle.of(*API_NAMES)
    if api is not None:
        checks.append(below(f"{api.name} idle cores < 0.05", api.cores, 0.05))
    processes = [
        replace(f, name=f"{f.name} ({phase})")
        for phase, measured_phase in (("no streams", quiet), ("idle", idle), ("live", live))
        for f in measured_phase.figures
    ]
    return BenchReport(
        scenario="watch",
        deployment=deployment.kind,
        settings={
            "streams": options.streams,
            "jobs": options.jobs,
            "job_seconds": options.job_seconds,
            "idle_s": options.idle_s,
            "seconds": options.seconds,
        },
        figures={
            "streams": options.streams,
            "opened": len(out.open_s),
            "ended": out.ended,
            "errors": errors,
            "live_events": len(out.live_s),
        },
        latencies={"open -> first event": latency(out.open_s), "event -> client": events},
        processes=processes,
        checks=checks,
        notes=[*out.notes, *(f"{code}: {n} streams" for code, n in sorted(out.errors.items()))],
    )
