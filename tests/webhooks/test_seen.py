"""Repeats of a webhook message are noticed within the window, in-process and through the
machine's real Redis (where several gateways share them); Redis being down lets them through."""

from __future__ import annotations

import asyncio
import uuid

from mediagen.webhooks.seen import LocalSeen, RedisSeen, Seen
from tests.fixtures.processes import free_port
from tests.fixtures.redis_server import MACHINE_REDIS_URL


async def firsts(seen: Seen, *keys: str) -> list[bool]:
    return [await seen.first(key) for key in keys]


async def test_in_process_repeats_are_noticed_until_the_window_ends() -> None:
    seen = LocalSeen(window_s=0.2)
    assert await firsts(seen, "m1", "m1", "m2") == [True, False, True]
    await asyncio.sleep(0.25)
    assert await firsts(seen, "m1") == [True]


async def test_gateways_sharing_redis_notice_each_others_messages() -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    one, other = (RedisSeen(MACHINE_REDIS_URL, 60, prefix=prefix) for _ in range(2))
    try:
        assert await firsts(one, "m1") == [True]
        assert await firsts(other, "m1", "m2") == [False, True]
    finally:
        await one.close()
        await other.close()


async def test_with_redis_down_every_message_counts_as_new() -> None:
    seen = RedisSeen(f"redis://127.0.0.1:{free_port()}/0", 60, prefix="test:")
    try:
        assert await firsts(seen, "m1", "m1") == [True, True]
    finally:
        await seen.close()
