"""The checker's round: each probe bounded by the timeout, failures described, the verdict
published to a health servicer's readiness names and to the dependency gauge."""

from __future__ import annotations

import asyncio

from mediagen.health.checker import HealthChecker
from mediagen.health.servicer import NOT_SERVING, SERVING, HealthServicer
from mediagen.metrics import definitions as m


class Switch:
    """A probe that fails (by raising, or by hanging) while told to."""

    def __init__(self) -> None:
        self.mode = "ok"

    async def __call__(self) -> None:
        if self.mode == "raise":
            raise ConnectionRefusedError("connection refused")
        if self.mode == "hang":
            await asyncio.sleep(10)


def _status(servicer: HealthServicer, name: str) -> int:
    return servicer._server_status[name]  # type: ignore[no-any-return]


async def test_a_round_publishes_readiness_and_keeps_liveness() -> None:
    database, storage = Switch(), Switch()
    checker = HealthChecker(
        {"database": database, "storage": storage}, interval_s=60, timeout_s=0.05, down_after=1
    )
    servicer = HealthServicer()
    await servicer.set("grpc.health.v1.Health", SERVING)
    await checker.check()
    await checker.attach(servicer, ["", "svc"])
    assert (_status(servicer, ""), _status(servicer, "svc")) == (SERVING, SERVING)

    database.mode, storage.mode = "hang", "raise"
    components = await checker.check()
    assert not checker.ready
    assert components["database"].error == "no answer within 0.05s"
    assert components["database"].latency_s < 1  # bounded by the timeout, not the hang
    # The kind of failure is public (the health route); the message is for the log.
    assert components["storage"].error == "ConnectionRefusedError"
    assert components["storage"].detail == "ConnectionRefusedError: connection refused"
    assert (_status(servicer, ""), _status(servicer, "svc")) == (NOT_SERVING, NOT_SERVING)
    assert _status(servicer, "grpc.health.v1.Health") == SERVING
    assert m.DEPENDENCY_UP.labels(component="database")._value.get() == 0

    database.mode = storage.mode = "ok"
    await checker.check()
    assert _status(servicer, "") == SERVING
    assert m.DEPENDENCY_UP.labels(component="database")._value.get() == 1
