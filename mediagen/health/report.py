"""The component report: what ``/api/v1/health`` lists, and how it travels from the gRPC
server to the gateway (as trailing metadata of ``grpc.health.v1.Health/Check``). Pure.

Each entry is ``{"name", "status", "latency_ms", "error"?}`` with status ``SERVING`` or
``NOT_SERVING``. The metadata value is that list as ASCII JSON (metadata must be ASCII).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, NotRequired, TypedDict

from mediagen.health.status import Component

#: Trailing metadata key of ``Health/Check`` that carries the report.
METADATA_KEY = "mediagen-health-components"
SERVING = "SERVING"
NOT_SERVING = "NOT_SERVING"


class Entry(TypedDict):
    """One component, as the JSON lists it."""

    name: str
    status: str
    latency_ms: float
    error: NotRequired[str]


def entry(name: str, *, up: bool, latency_s: float, error: str = "") -> Entry:
    item = Entry(name=name, status=SERVING if up else NOT_SERVING, latency_ms=_ms(latency_s))
    if error:
        item["error"] = error
    return item


def entries(components: Iterable[Component]) -> list[Entry]:
    return [entry(c.name, up=c.up, latency_s=c.latency_s, error=c.error) for c in components]


def encode(components: Iterable[Component]) -> str:
    return json.dumps(entries(components), separators=(",", ":"), ensure_ascii=True)


def decode(text: str) -> list[Entry]:
    """The entries in a metadata value; malformed ones are dropped (a newer or older server
    must not break the gateway's health route)."""
    try:
        raw: Any = json.loads(text)
    except ValueError:
        return []
    if not isinstance(raw, list):
        return []
    return [_entry(item) for item in raw if _valid(item)]


def _valid(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and isinstance(item.get("name"), str)
        and item.get("status") in (SERVING, NOT_SERVING)
        and isinstance(item.get("latency_ms"), int | float)
        and isinstance(item.get("error", ""), str)
    )


def _entry(item: dict[str, Any]) -> Entry:
    return entry(
        item["name"],
        up=item["status"] == SERVING,
        latency_s=item["latency_ms"] / 1000,
        error=item.get("error", ""),
    )


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)
