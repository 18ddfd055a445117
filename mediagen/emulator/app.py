"""The emulator's ASGI app: faults, then the rate limits, then authentication, then the
routes."""

from __future__ import annotations

import hmac
import math

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from mediagen.emulator.api import PredictionsApi
from mediagen.emulator.control import ControlApi
from mediagen.emulator.faults import Route
from mediagen.emulator.injector import ConnectionAborter, FaultInjector, classify
from mediagen.emulator.problems import Problem, not_found, throttled
from mediagen.emulator.state import Emulator
from mediagen.providers.rates import Budget

_SCHEMES = ("bearer", "token")  # Bearer is documented; Token is the older scheme still seen


class RequireToken:
    """401 on ``/v1`` calls without the configured token, as Replicate (files stay open, as
    their unguessable replicate.delivery URLs are)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            problem = self._check(Headers(scope=scope).get("authorization"))
            if problem is not None:
                await problem.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _check(self, header: str | None) -> Problem | None:
        if not header:
            return _unauthenticated("You did not pass an authentication token")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() not in _SCHEMES or not hmac.compare_digest(
            credential.strip().encode(), self.token
        ):
            return _unauthenticated("You did not pass a valid authentication token")
        return None


class EnforceLimits:
    """429 for ``/v1`` calls over their account's per-minute budget (creates, or the rest), with
    ``retry_after`` in the body and a ``Retry-After`` header: whole seconds, at least 1."""

    def __init__(self, app: ASGIApp, emulator: Emulator) -> None:
        self.app = app
        self.emulator = emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = classify(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if found is not None and found[0] is not Route.FILE:
            budget = Budget.CREATE if found[0] is Route.CREATE else Budget.OTHER
            account = Headers(scope=scope).get("authorization", "")
            wait_s = self.emulator.throttle(account, budget)
            if wait_s is not None:
                problem = throttled(max(1, math.ceil(wait_s)), header=True)
                await problem.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _unauthenticated(detail: str) -> Problem:
    return Problem(401, detail, title="Unauthenticated")


async def _on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)  # registered for Problem only
    return exc.response()


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # registered for HTTPException only
    if exc.status_code == 404:
        return not_found().response()
    return Problem(exc.status_code, exc.detail).response()


def build_app(emulator: Emulator, abort: ConnectionAborter | None = None) -> ASGIApp:
    """The whole emulator as one ASGI app. ``abort`` lets ``Drop`` faults close connections."""
    routes = PredictionsApi(emulator).routes() + ControlApi(emulator).routes()
    app: ASGIApp = Starlette(
        routes=routes,
        exception_handlers={Problem: _on_problem, HTTPException: _on_http_error},
    )
    if emulator.config.api_token is not None:
        app = RequireToken(app, emulator.config.api_token)
    return FaultInjector(EnforceLimits(app, emulator), emulator, abort)
