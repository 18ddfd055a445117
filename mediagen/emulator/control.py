"""Control endpoints (``/_emulator/...``): faults and counts, for tests in other processes.

- ``GET /_emulator/health`` -> ``{"status": "ok"}``
- ``GET /_emulator/stats`` -> ``{"requests": {"create": n, "get": n, ...}, "creates":
  {"version"|"model"|"deployment": n}, "predictions": n, "active": n, "faults_applied": n,
  "webhooks": {"delivered": n, "failed": n, ...},
  "throttled": {"create": n, "other": n}}`` (calls refused by the rate limits)
- ``GET /_emulator/faults`` -> ``{"rules": [{"kind": ..., ..., "remaining": n}]}``
- ``POST /_emulator/faults`` with a rule, a list of rules or ``{"rules": [...]}`` (forms in
  :mod:`mediagen.emulator.faults`) -> 201 and the armed rules; 400 names a bad rule
- ``DELETE /_emulator/faults`` -> 204
- ``GET /_emulator/limits`` -> ``{"creates_per_min": n, "requests_per_min": n, "burst_s": s}``
- ``PUT /_emulator/limits`` with any of those keys (0: no limit) -> the limits now enforced,
  every account's budget full again; 400 names a bad value
- ``POST /_emulator/reset`` -> 204: forget predictions, stats and faults
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from mediagen.emulator.faults import fault_from_json, fault_to_json
from mediagen.emulator.problems import Problem
from mediagen.emulator.state import Emulator
from mediagen.providers.rates import Rates

_LIMIT_KEYS = frozenset({"creates_per_min", "requests_per_min", "burst_s"})


class ControlApi:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/_emulator/health", self.health, methods=["GET"]),
            Route("/_emulator/stats", self.stats, methods=["GET"]),
            Route("/_emulator/faults", self.faults, methods=["GET"]),
            Route("/_emulator/faults", self.add_faults, methods=["POST"]),
            Route("/_emulator/faults", self.clear_faults, methods=["DELETE"]),
            Route("/_emulator/limits", self.limits, methods=["GET"]),
            Route("/_emulator/limits", self.set_limits, methods=["PUT"]),
            Route("/_emulator/reset", self.reset, methods=["POST"]),
        ]

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def stats(self, request: Request) -> Response:
        return JSONResponse(self.emulator.stats_json())

    async def faults(self, request: Request) -> Response:
        return JSONResponse(self._rules_json())

    async def add_faults(self, request: Request) -> Response:
        try:
            body: Any = json.loads(await request.body())
            if isinstance(body, dict):
                body = body.get("rules", [body]) if "kind" not in body else [body]
            if not isinstance(body, list) or not all(isinstance(r, dict) for r in body):
                raise ValueError("expected a rule object, a list of them, or {'rules': [...]}")
            rules = [fault_from_json(rule) for rule in body]
        except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
            raise Problem(400, str(exc), title="Invalid fault rule") from exc
        self.emulator.inject(*rules)
        return JSONResponse(self._rules_json(), 201)

    async def clear_faults(self, request: Request) -> Response:
        self.emulator.clear_faults()
        return Response(status_code=204)

    async def limits(self, request: Request) -> Response:
        return JSONResponse(_limits_json(self.emulator.buckets.limits))

    async def set_limits(self, request: Request) -> Response:
        try:
            body: Any = json.loads(await request.body())
            if not isinstance(body, dict) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in body.values()
            ):
                raise ValueError("expected an object of numbers")
            if unknown := set(body) - _LIMIT_KEYS:
                raise ValueError(f"unknown limits: {', '.join(sorted(unknown))}")
            limits = dataclasses.replace(self.emulator.buckets.limits, **body)
        except (ValueError, TypeError) as exc:  # an unknown key is a TypeError
            raise Problem(400, str(exc), title="Invalid rate limits") from exc
        self.emulator.set_limits(limits)
        return JSONResponse(_limits_json(limits))

    async def reset(self, request: Request) -> Response:
        self.emulator.reset()
        return Response(status_code=204)

    def _rules_json(self) -> dict[str, Any]:
        return {"rules": [fault_to_json(r, left) for r, left in self.emulator.faults.pending()]}


def _limits_json(limits: Rates) -> dict[str, float]:
    """The limits as the control API shows them: the emulator's buckets, like Replicate, let
    short bursts above the rate through (``strict_minute`` is the workers' side)."""
    return {key: getattr(limits, key) for key in sorted(_LIMIT_KEYS)}
