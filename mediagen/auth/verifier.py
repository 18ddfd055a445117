"""Checking a presented API key against the store, with a short cache of verified keys.

Only keys that verified are cached, by their hash (never the text), for ``cache_s`` seconds:
a revoked key stops working within that time in every process. Unknown or wrong keys always go
to the database, so guessing costs the guesser a round trip each time and fills no memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from cachetools import TTLCache

from mediagen.auth.keys import ApiKey, hash_key, matches
from mediagen.auth.principal import Principal
from mediagen.auth.store import KeyRecord, KeyStore
from mediagen.errors import InvalidApiKey

log = logging.getLogger(__name__)

#: Verified keys held at once per process; more simply means more database reads.
CACHE_SIZE = 10_000


class KeyVerifier:
    def __init__(
        self,
        store: KeyStore,
        *,
        cache_s: float = 5.0,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._cache: TTLCache[str, KeyRecord] | None = (
            TTLCache(CACHE_SIZE, cache_s, timer=timer) if cache_s > 0 else None
        )

    async def verify(self, key: ApiKey) -> Principal:
        """The key's principal; :class:`InvalidApiKey` if it is unknown, wrong or revoked."""
        digest = hash_key(key)
        record = self._cache.get(digest) if self._cache is not None else None
        if record is None:
            record = await self._lookup(key)
            if self._cache is not None:
                self._cache[digest] = record
        return Principal(tenant=record.tenant, role=record.role, via="key", key_id=key.key_id)

    async def _lookup(self, key: ApiKey) -> KeyRecord:
        found = await self.store.find(key.key_id)
        if found is None or not matches(key, found[1]):
            # One answer for both: which key ids exist is not the caller's business.
            log.info("auth: rejected key=%s (unknown id or wrong secret)", key.key_id)
            raise InvalidApiKey("invalid API key", metadata={"key_id": key.key_id})
        record = found[0]
        if record.revoked:
            log.info("auth: rejected key=%s (revoked)", key.key_id)
            raise InvalidApiKey(
                f"API key {key.key_id} has been revoked", metadata={"key_id": key.key_id}
            )
        return record
