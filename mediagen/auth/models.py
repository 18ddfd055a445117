"""The ``api_keys`` table, on the same metadata as the jobs (one schema, one Alembic history)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from mediagen.jobs.models import Base, UTCDateTime


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    #: The key's public id (the ``<id>`` of ``mg_<id>_<secret>``).
    id: Mapped[str] = mapped_column(String(12), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    #: SHA-256 of id and secret (mediagen.auth.keys.hash_key); the secret itself is never kept.
    key_hash: Mapped[str] = mapped_column(String(64))
    create_time: Mapped[datetime] = mapped_column(UTCDateTime)
    #: Set once revoked; a revoked key never works again.
    revoke_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
