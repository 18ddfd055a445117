"""Fixtures for the client and CLI tests: a fake server per test, and a client bound to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from mediagen import client as client_module
from mediagen.client import MediagenClient, RetryPolicy
from tests.client.fake import FakeServer

#: Retries without waiting, so fault tests take no wall-clock time.
NO_WAIT = RetryPolicy(attempts=4, initial_s=0.0, max_s=0.0)


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def client(fake: FakeServer) -> AsyncIterator[MediagenClient]:
    async with MediagenClient(fake.target, retry=NO_WAIT, http_base_url=fake.http_url) as c:
        yield c


@pytest.fixture(autouse=True)
def _no_retry_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients built without a policy (the CLI's) retry at once too."""
    monkeypatch.setattr(client_module, "DEFAULT_RETRY_POLICY", NO_WAIT)


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI reads these; a developer's shell must not change what the tests see."""
    for name in (
        "MEDIAGEN_TARGET",
        "MEDIAGEN_GRPC_PORT",
        "MEDIAGEN_HTTP_PORT",
        "MEDIAGEN_PUBLIC_URL",
        "MEDIAGEN_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
