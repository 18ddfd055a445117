"""The chaos run as a client of the APIs: submit jobs, watch them, read them back.

Submissions carry a request id, so a retry after a lost answer returns the same job. Watchers
record every sequence number the server sends (the typed client would hide a repeat), and on a
broken stream resume with their last sequence on the *other* API, as a caller behind a load
balancer would.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Final

import grpc
from google.protobuf import struct_pb2

from mediagen.chaos.plan import JobSpec
from mediagen.chaos.report import WatchRecord
from mediagen.v1 import job_pb2
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc

_RETRYABLE: Final = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
    }
)
_TERMINAL: Final = frozenset(
    {job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELED}
)
_CALL_TIMEOUT_S: Final = 10.0


def state_name(state: int) -> str:
    """``SUCCEEDED`` for ``JOB_STATE_SUCCEEDED``."""
    return job_pb2.JobState.Name(state).removeprefix("JOB_STATE_")  # type: ignore[arg-type]


class Load:
    """Channels to every API, and the errors their callers saw."""

    def __init__(self, targets: list[str]) -> None:
        self.channels = [grpc.aio.insecure_channel(target) for target in targets]
        self.stubs = [pb_grpc.MediaGenerationServiceStub(c) for c in self.channels]
        self.errors: Counter[str] = Counter()

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()

    def _record(self, method: str, exc: grpc.aio.AioRpcError) -> None:
        self.errors[f"{method} {exc.code().name}"] += 1

    async def submit(self, spec: JobSpec, api: int, deadline: float) -> str | None:
        """The job's id, once an API accepted it; None if none did before ``deadline``."""
        extra = struct_pb2.Struct()
        extra.update({"emulator_latency_s": round(spec.latency_s, 2)})
        request = pb.GenerateMediaRequest(
            prompt=spec.prompt,
            parameters=job_pb2.GenerationParameters(
                width=64, height=64, seed=spec.seed, extra_input=extra
            ),
            request_id=str(uuid.uuid4()),
        )
        delay = 0.2
        while time.monotonic() < deadline:
            try:
                reply = await self.stubs[api].GenerateMedia(request, timeout=_CALL_TIMEOUT_S)
                return str(reply.job.id)
            except grpc.aio.AioRpcError as exc:
                self._record("GenerateMedia", exc)
                if exc.code() not in _RETRYABLE:
                    return None
            api = (api + 1) % len(self.stubs)
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)
        return None

    async def watch(self, job_id: str, api: int, deadline: float) -> WatchRecord:
        """Watch from the first event until the terminal one (or ``deadline``)."""
        received: list[int] = []
        last = 0
        reconnects = 0
        delay = 0.2
        while (remaining := deadline - time.monotonic()) > 0:
            call = self.stubs[api].WatchJob(
                pb.WatchJobRequest(id=job_id, after_sequence=last), timeout=remaining
            )
            try:
                async for response in call:
                    event = response.event
                    received.append(event.sequence)
                    last = max(last, event.sequence)
                    delay = 0.2
                    if event.job.status in _TERMINAL:
                        return WatchRecord(tuple(received), reconnects, finished=True)
            except grpc.aio.AioRpcError as exc:
                self._record("WatchJob", exc)
            finally:
                call.cancel()
            reconnects += 1
            api = (api + 1) % len(self.stubs)
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)
        return WatchRecord(tuple(received), reconnects, finished=False)

    async def get(self, job_id: str, deadline: float) -> job_pb2.Job | None:
        """The job as an API reads it now, trying each API until ``deadline``."""
        api = 0
        while time.monotonic() < deadline:
            try:
                reply = await self.stubs[api].GetJob(
                    pb.GetJobRequest(id=job_id), timeout=_CALL_TIMEOUT_S
                )
                return reply.job
            except grpc.aio.AioRpcError as exc:
                self._record("GetJob", exc)
            api = (api + 1) % len(self.stubs)
            await asyncio.sleep(0.5)
        return None

    async def wait_final(self, job_id: str, deadline: float) -> job_pb2.Job | None:
        """Read the job until it is final or ``deadline`` passes; the last read."""
        job = None
        while time.monotonic() < deadline:
            job = await self.get(job_id, deadline)
            if job is None or job.status in _TERMINAL:
                return job
            await asyncio.sleep(1.0)
        return job
