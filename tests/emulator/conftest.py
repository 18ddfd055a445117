"""The real ``replicate`` 1.0.7 client, pointed at the test emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from replicate.client import Client

from mediagen.emulator import RunningEmulator
from tests.emulator.helpers import TOKEN


@pytest_asyncio.fixture
async def client(emulator: RunningEmulator) -> AsyncIterator[Client]:
    replicate_client = Client(api_token=TOKEN, base_url=emulator.base_url)
    yield replicate_client
    await replicate_client._async_client.aclose()


@pytest_asyncio.fixture
async def http(emulator: RunningEmulator) -> AsyncIterator[httpx.AsyncClient]:
    """Plain httpx, to see what the replicate client hides (headers, status codes)."""
    async with httpx.AsyncClient(base_url=emulator.base_url) as raw:
        yield raw
