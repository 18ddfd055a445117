"""Shared steps of the scenarios: a channel to the deployment and a meter of its processes
(and of this one, the load's client) around the measured phase."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc

from mediagen.bench.calls import Stub
from mediagen.bench.deploy import Deployment
from mediagen.bench.procfs import Meter, ProcessFigures

#: gRPC messages may carry a job with many media.
_CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]


@asynccontextmanager
async def opened(deployment: Deployment) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(deployment.target, options=_CHANNEL_OPTIONS) as channel:
        yield Stub(channel)


class Measured:
    """The figures of a measured phase, filled when it ends."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self.figures: list[ProcessFigures] = []

    def of(self, *names: str) -> ProcessFigures | None:
        """The first of the named processes that was measured."""
        return next((f for name in names for f in self.figures if f.name == name), None)


@asynccontextmanager
async def measured(deployment: Deployment) -> AsyncIterator[Measured]:
    """Meter the deployment's processes and this client (``bench``) for the block."""
    meter = Meter({**deployment.processes, "bench": os.getpid()}, deployment.trees)
    phase = Measured(meter)
    meter.start()
    try:
        yield phase
    finally:
        phase.figures = await meter.stop()
