"""``mediagen keys create | list | revoke``: API keys, straight in the database.

They work on what ``serve`` and ``api`` read: ``DATABASE_URL``, else the SQLite file in the data
dir, and apply pending migrations first (as ``mediagen migrate``). A key's secret is printed
once, by ``create``, on stdout alone (``KEY=$(mediagen keys create --tenant acme)``); nothing
else ever shows it, nor its hash.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

from mediagen.auth.keys import KEY_ID
from mediagen.auth.principal import Role
from mediagen.auth.store import KeyRecord, KeyStore, UnknownKey
from mediagen.cli.base import EXIT_FAILED, EXIT_OK, UsageError
from mediagen.cli.output import print_error, table
from mediagen.config import ConfigError, Settings
from mediagen.errors import MediagenError

KeysAction = Callable[[KeyStore, argparse.Namespace, Settings], Awaitable[int]]


def add_keys_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = commands.add_parser(
        "keys", help="create, list or revoke API keys", description="Manage API keys."
    )
    key_commands = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)

    def command(name: str, action: KeysAction, summary: str) -> argparse.ArgumentParser:
        sub = key_commands.add_parser(
            name, help=summary, description=summary[0].upper() + summary[1:] + "."
        )
        sub.add_argument(
            "--data-dir",
            metavar="DIR",
            help="where the embedded SQLite database lives (env MEDIAGEN_DATA_DIR; default "
            ".mediagen); ignored when DATABASE_URL is set",
        )
        sub.set_defaults(run=run_keys, keys_action=action)
        return sub

    create = command("create", keys_create, "create a key and print it (the only time it is shown)")
    create.add_argument("--tenant", required=True, metavar="NAME", help="the tenant it acts for")
    create.add_argument(
        "--role",
        choices=[role.value for role in Role],
        default=Role.TENANT.value,
        help="tenant (its own jobs; the default), viewer (read only) or admin (every tenant)",
    )
    listing = command("list", keys_list, "list keys: id, tenant, role, created, revoked")
    listing.add_argument("--json", action="store_true", help="print JSON")
    revoke = command("revoke", keys_revoke, "revoke a key for good")
    revoke.add_argument("key_id", metavar="KEY_ID", help="the id `keys list` shows")


def run_keys(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        raise UsageError(f"configuration: {exc}") from exc
    if args.data_dir:
        settings = settings.replace(data_dir=Path(args.data_dir))
    action: KeysAction = args.keys_action

    async def run() -> int:
        from mediagen.jobs.database import Database
        from mediagen.jobs.migrate import upgrade

        if settings.database_url is None:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        await upgrade(settings.effective_database_url)
        db = Database(settings.effective_database_url, pool_size=1, max_overflow=0)
        try:
            return await action(KeyStore(db), args, settings)
        finally:
            await db.dispose()

    try:
        return asyncio.run(run())
    except MediagenError as exc:  # the database is unreachable
        print_error(exc.message)
    except OSError as exc:
        print_error(f"cannot open the database: {exc}")
    return EXIT_FAILED


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value is not None else "-"


async def keys_create(store: KeyStore, args: argparse.Namespace, settings: Settings) -> int:
    try:
        record, key = await store.create(args.tenant, Role(args.role))
    except ValueError as exc:
        raise UsageError(f"--tenant: {exc}") from exc
    print(key.text, flush=True)
    print(
        f"Created API key {record.key_id} for tenant {record.tenant} (role {record.role.value}).\n"
        "WARNING: this is the only time the key is shown; it cannot be shown again. Store it "
        "now.\nSend it as 'authorization: Bearer <key>' (mediagen --api-key, or "
        "MEDIAGEN_API_KEY).\nA server that started without keys stays open until it restarts.",
        file=sys.stderr,
    )
    return EXIT_OK


def _obj(record: KeyRecord) -> dict[str, object]:
    return {
        "id": record.key_id,
        "tenant": record.tenant,
        "role": record.role.value,
        "created": record.create_time.isoformat(),
        "revoked": record.revoke_time.isoformat() if record.revoke_time else None,
    }


async def keys_list(store: KeyStore, args: argparse.Namespace, settings: Settings) -> int:
    records = await store.list()
    if args.json:
        print(json.dumps([_obj(r) for r in records], indent=2))
        return EXIT_OK
    rows = [("ID", "TENANT", "ROLE", "CREATED", "REVOKED")]
    rows.extend(
        (r.key_id, r.tenant, r.role.value, _time(r.create_time), _time(r.revoke_time))
        for r in records
    )
    if records:
        print(table(rows))
    active = sum(not r.revoked for r in records)
    print(f"{len(records)} keys, {active} active")
    return EXIT_OK


async def keys_revoke(store: KeyStore, args: argparse.Namespace, settings: Settings) -> int:
    if not KEY_ID.fullmatch(args.key_id):
        raise UsageError(f"not a key id: {args.key_id!r} (12 hex digits, as `keys list` shows)")
    try:
        record = await store.revoke(args.key_id)
    except UnknownKey:
        print_error(f"no API key has id {args.key_id}")
        return EXIT_FAILED
    print(
        f"Revoked API key {record.key_id} (tenant {record.tenant}) at {_time(record.revoke_time)}; "
        f"servers refuse it within {settings.auth_cache_s:g}s (MEDIAGEN_AUTH_CACHE_S)"
    )
    return EXIT_OK
