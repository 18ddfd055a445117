"""API keys in the database: create, list, revoke, and look one up to verify a call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select

from mediagen.auth.keys import ApiKey, check_tenant, new_key
from mediagen.auth.keys import hash_key as _hash
from mediagen.auth.models import ApiKeyRow
from mediagen.auth.principal import Role
from mediagen.jobs.database import Database


class UnknownKey(LookupError):
    """No key has that id."""


@dataclass(frozen=True)
class KeyRecord:
    """What is known about a key; never its secret (and its hash only where verifying needs it)."""

    key_id: str
    tenant: str
    role: Role
    create_time: datetime
    revoke_time: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoke_time is not None


def _record(row: ApiKeyRow) -> KeyRecord:
    return KeyRecord(row.id, row.tenant, Role(row.role), row.create_time, row.revoke_time)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class KeyStore:
    def __init__(self, db: Database, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self.db = db
        self._clock = clock

    async def create(self, tenant: str, role: Role = Role.TENANT) -> tuple[KeyRecord, ApiKey]:
        """A new key for ``tenant``; the returned ApiKey is the only copy of its secret."""
        key = new_key()
        row = ApiKeyRow(
            id=key.key_id,
            tenant=check_tenant(tenant),
            role=Role(role).value,
            key_hash=_hash(key),
            create_time=self._clock(),
            revoke_time=None,
        )
        async with self.db.writing() as session:
            session.add(row)
        return _record(row), key

    async def list(self) -> list[KeyRecord]:
        """Every key, oldest first, revoked ones included."""
        async with self.db.reading() as session:
            rows = await session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.create_time))
            return [_record(row) for row in rows]

    async def revoke(self, key_id: str) -> KeyRecord:
        """Revoke a key (again is a no-op that keeps the first time); :class:`UnknownKey`."""
        async with self.db.writing() as session:
            row = await session.get(ApiKeyRow, key_id)
            if row is None:
                raise UnknownKey(key_id)
            if row.revoke_time is None:
                row.revoke_time = self._clock()
            return _record(row)

    async def find(self, key_id: str) -> tuple[KeyRecord, str] | None:
        """The key with that id and its stored hash, or None."""
        async with self.db.reading() as session:
            row = await session.get(ApiKeyRow, key_id)
            return None if row is None else (_record(row), row.key_hash)

    async def count_active(self) -> int:
        """Keys not revoked: with none, a loopback server may run open."""
        async with self.db.reading() as session:
            query = (
                select(func.count()).select_from(ApiKeyRow).where(ApiKeyRow.revoke_time.is_(None))
            )
            return int(await session.scalar(query) or 0)
