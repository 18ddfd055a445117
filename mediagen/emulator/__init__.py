"""A Replicate-compatible HTTP server that the official ``replicate`` client cannot tell apart.

It speaks the predictions API (create, get, cancel, list, file delivery) with configurable
latency, tqdm progress in ``logs``, real image and audio outputs, retention, and fault injection
(:mod:`mediagen.emulator.faults`). Embedded mode, tests and benchmarks run against it::

    running = await start_emulator(EmulatorConfig(latency_s=0.3))
    client = replicate.Client(api_token="any", base_url=running.base_url)
    running.emulator.inject(ServerError(route=Route.CREATE, status=503))
    ...
    await running.stop()
"""

from mediagen.emulator.config import EmulatorConfig
from mediagen.emulator.faults import (
    Delay,
    Drop,
    Fault,
    Outcome,
    Output,
    Route,
    ServerError,
    Throttle,
    Webhook,
    WebhookAction,
    fault_from_json,
)
from mediagen.emulator.server import RunningEmulator, serve_emulator_forever, start_emulator
from mediagen.emulator.state import Emulator

__all__ = [
    "Delay",
    "Drop",
    "Emulator",
    "EmulatorConfig",
    "Fault",
    "Outcome",
    "Output",
    "Route",
    "RunningEmulator",
    "ServerError",
    "Throttle",
    "Webhook",
    "WebhookAction",
    "fault_from_json",
    "serve_emulator_forever",
    "start_emulator",
]
