"""Apply the Alembic migrations (packaged as ``mediagen.migrations``) to a database."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

import mediagen.migrations


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(mediagen.migrations.__file__).parent))
    # ConfigParser interpolates "%", which URL-encoded passwords contain.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


async def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema to ``revision``. Alembic runs its own event loop, so it gets a thread."""
    await asyncio.to_thread(command.upgrade, alembic_config(database_url), revision)
