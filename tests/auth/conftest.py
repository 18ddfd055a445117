"""An embedded service with API keys in its database (so authentication is enforced), and a
record of the principal the servicer saw for each call."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mediagen.api.servicer import MediaGenerationServicer
from mediagen.auth.principal import Principal, Role, current_principal
from mediagen.auth.store import KeyStore
from mediagen.embedded import Embedded
from mediagen.jobs.database import Database
from mediagen.jobs.migrate import upgrade
from tests.fixtures.embedded import embedded_settings


@dataclass
class Secured:
    app: Embedded
    #: name -> the whole key text; names: admin, acme, acme_viewer, globex
    keys: dict[str, str]
    ids: dict[str, str]
    #: (method, principal) for every call that reached the servicer
    seen: list[tuple[str, Principal]] = field(default_factory=list)

    def bearer(self, name: str) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.keys[name]}")]

    @property
    def store(self) -> KeyStore:
        assert self.app.core is not None
        return KeyStore(self.app.core.db)


KEYS = {
    "admin": ("ops", Role.ADMIN),
    "acme": ("acme", Role.TENANT),
    "acme_viewer": ("acme", Role.VIEWER),
    "globex": ("globex", Role.TENANT),
}


async def create_keys(database_url: str) -> tuple[dict[str, str], dict[str, str]]:
    await upgrade(database_url)
    db = Database(database_url)
    try:
        store = KeyStore(db)
        texts, ids = {}, {}
        for name, (tenant, role) in KEYS.items():
            record, key = await store.create(tenant, role)
            texts[name], ids[name] = key.text, record.key_id
        return texts, ids
    finally:
        await db.dispose()


def _recording_unary(name: str, seen: list[tuple[str, Principal]]) -> Callable[..., Any]:
    original = getattr(MediaGenerationServicer, name)

    async def method(self: Any, request: Any, context: Any) -> Any:
        seen.append((name, current_principal()))
        return await original(self, request, context)

    return method


def _recording_stream(name: str, seen: list[tuple[str, Principal]]) -> Callable[..., Any]:
    original = getattr(MediaGenerationServicer, name)

    async def method(self: Any, request: Any, context: Any) -> AsyncIterator[Any]:
        seen.append((name, current_principal()))
        async for response in original(self, request, context):
            yield response

    return method


@pytest.fixture
async def secured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Secured]:
    settings = embedded_settings(tmp_path / "data", auth_cache_s=0.0)
    settings.data_dir.mkdir(parents=True)
    texts, ids = await create_keys(settings.effective_database_url)
    seen: list[tuple[str, Principal]] = []
    for name in ("GenerateMedia", "GetJob", "ListJobs", "CancelJob", "GetMedia"):
        monkeypatch.setattr(MediaGenerationServicer, name, _recording_unary(name, seen))
    monkeypatch.setattr(MediaGenerationServicer, "WatchJob", _recording_stream("WatchJob", seen))
    app = Embedded(settings)
    await app.start()
    try:
        yield Secured(app, texts, ids, seen)
    finally:
        await app.stop()
