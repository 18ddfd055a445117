"""KeyStore and KeyVerifier on SQLite and PostgreSQL (each test runs on both)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from mediagen.auth.keys import ApiKey
from mediagen.auth.principal import Principal, Role
from mediagen.auth.store import KeyStore, UnknownKey
from mediagen.auth.verifier import KeyVerifier
from mediagen.errors import InvalidApiKey, Unavailable
from mediagen.jobs.database import Database
from tests.fixtures.s3 import free_port


@pytest.fixture
def store(database: Database) -> KeyStore:
    return KeyStore(database)  # an empty database: the fixture truncates api_keys too


async def test_create_list_revoke(store: KeyStore) -> None:
    assert await store.list() == [] and await store.count_active() == 0
    acme, acme_key = await store.create("acme")
    ops, _ = await store.create("ops", Role.ADMIN)
    assert (acme.tenant, acme.role, acme.revoked) == ("acme", Role.TENANT, False)
    assert acme.key_id == acme_key.key_id
    assert [r.key_id for r in await store.list()] == [acme.key_id, ops.key_id]
    assert await store.count_active() == 2

    revoked = await store.revoke(acme.key_id)
    assert revoked.revoked and revoked.revoke_time is not None
    again = await store.revoke(acme.key_id)
    assert again.revoke_time == revoked.revoke_time  # the first time stays
    assert await store.count_active() == 1
    assert [r.revoked for r in await store.list()] == [True, False]
    with pytest.raises(UnknownKey):
        await store.revoke("0" * 12)


async def test_only_the_hash_is_stored(store: KeyStore, database: Database) -> None:
    _, key = await store.create("acme")
    async with database.reading() as session:
        rows = (await session.execute(text("SELECT * FROM api_keys"))).all()
    assert len(rows) == 1 and key.secret not in repr(rows[0])


async def test_invalid_tenant_is_refused(store: KeyStore) -> None:
    with pytest.raises(ValueError, match="invalid tenant"):
        await store.create("no spaces please")
    assert await store.list() == []


async def test_verify_and_the_revocation_window(store: KeyStore) -> None:
    now = [0.0]
    verifier = KeyVerifier(store, cache_s=5.0, timer=lambda: now[0])
    record, key = await store.create("acme", Role.VIEWER)
    expected = Principal("acme", Role.VIEWER, via="key", key_id=record.key_id)
    assert await verifier.verify(key) == expected

    await store.revoke(record.key_id)
    now[0] = 4.0
    assert await verifier.verify(key) == expected  # still cached: within MEDIAGEN_AUTH_CACHE_S
    now[0] = 5.5
    with pytest.raises(InvalidApiKey, match="revoked"):
        await verifier.verify(key)


async def test_wrong_secrets_and_unknown_ids_look_the_same(store: KeyStore) -> None:
    verifier = KeyVerifier(store, cache_s=0)
    record, key = await store.create("acme")
    for bad in (ApiKey(record.key_id, "x" * 43), ApiKey("f" * 12, key.secret)):
        with pytest.raises(InvalidApiKey) as caught:
            await verifier.verify(bad)
        assert caught.value.message == "invalid API key"
    # a wrong secret never lands in the cache in place of the right one
    assert (await verifier.verify(key)).tenant == "acme"


async def test_an_unreachable_database_is_unavailable() -> None:
    # nothing listens on a free loopback port: the connection is refused at once
    db = Database(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/none")
    try:
        with pytest.raises(Unavailable):
            await KeyVerifier(KeyStore(db), cache_s=0).verify(ApiKey("a" * 12, "b" * 43))
    finally:
        await db.dispose()
