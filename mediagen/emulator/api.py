"""Replicate's HTTP API (``/v1``) and output file delivery (``/files``), as Starlette routes."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from mediagen.emulator.inputs import Target, target_for_model, target_for_version
from mediagen.emulator.outputs import BlobFile, ImageFile
from mediagen.emulator.problems import Problem
from mediagen.emulator.render import blob_chunks, render_audio, render_image
from mediagen.emulator.state import Emulator
from mediagen.providers.base import PredictionStatus

MAX_WAIT_S = 60  # Prefer: wait holds a create at most this long, as Replicate
_PREFER_WAIT = re.compile(r"\s*wait\s*(?:=\s*(\d+))?\s*")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def base_url(request: Request) -> str:
    """The emulator's own URL as this client reached it; file and ``urls`` links use it."""
    return str(request.base_url).rstrip("/")


def prefer_wait_s(header: str | None) -> float | None:
    """Seconds a ``Prefer: wait[=N]`` header asks to hold the create; None if it asks none."""
    for preference in (header or "").split(","):
        if match := _PREFER_WAIT.fullmatch(preference):
            seconds = int(match[1]) if match[1] else MAX_WAIT_S
            return float(min(max(seconds, 1), MAX_WAIT_S))
    return None


def cancel_after_s(header: str | None) -> float | None:
    """A ``Cancel-After`` duration such as ``1m``, ``30s`` or ``1m30s``."""
    if header is None:
        return None
    text = header.strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise Problem(400, f"Invalid Cancel-After duration {header!r}", title="Invalid header")
    return sum(float(number) * _UNIT_S[unit] for number, unit in parts)


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except json.JSONDecodeError as exc:
        raise Problem(400, f"Request body is not valid JSON: {exc}", title="Bad request") from exc
    if not isinstance(body, dict):
        raise Problem(400, "Request body must be a JSON object", title="Bad request")
    return body


def _timestamp(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise Problem(400, f"{name} must be an ISO 8601 time", title="Bad request") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class PredictionsApi:
    """Handlers bound to one emulator."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/predictions", self.create_with_version, methods=["POST"]),
            Route("/v1/predictions", self.list, methods=["GET"]),
            Route("/v1/models/{owner}/{name}/predictions", self.create_for_model, methods=["POST"]),
            Route(
                "/v1/deployments/{owner}/{name}/predictions",
                self.create_for_deployment,
                methods=["POST"],
            ),
            Route("/v1/predictions/{id}", self.get, methods=["GET"]),
            Route("/v1/predictions/{id}/cancel", self.cancel, methods=["POST"]),
            Route("/v1/webhooks/default/secret", self.webhook_secret, methods=["GET"]),
            Route("/files/{id}/{name}", self.file, methods=["GET"]),
        ]

    async def create_with_version(self, request: Request) -> Response:
        body = await _json_object(request)
        target = target_for_version(body.get("version"), self.emulator.models_of_versions)
        return await self._create(request, body, target, "version")

    async def create_for_model(self, request: Request) -> Response:
        body = await _json_object(request)
        owner, name = request.path_params["owner"], request.path_params["name"]
        return await self._create(request, body, target_for_model(owner, name), "model")

    async def create_for_deployment(self, request: Request) -> Response:
        body = await _json_object(request)
        owner, name = request.path_params["owner"], request.path_params["name"]
        target = target_for_model(owner, name, deployment=True)
        return await self._create(request, body, target, "deployment")

    async def _create(
        self, request: Request, body: dict[str, Any], target: Target, endpoint: str
    ) -> Response:
        wait_s = prefer_wait_s(request.headers.get("prefer"))
        prediction = self.emulator.create(
            target,
            body,
            endpoint=endpoint,
            cancel_after_s=cancel_after_s(request.headers.get("cancel-after")),
        )
        self.emulator.webhooks.schedule(prediction, base_url(request))
        if wait_s is None:
            return JSONResponse(self.emulator.render(prediction, base_url(request)), 201)
        answered = await self.emulator.wait_for_answer(prediction, wait_s)
        data = self.emulator.render(prediction, base_url(request))
        if not answered:
            # Replicate answers a sync create that ran out of time as ``starting``; 1.0.7's run()
            # treats every other status as final (reference §1.3, §3.5).
            data["status"] = PredictionStatus.STARTING.value
        return JSONResponse(data, 201, headers={"Location": data["urls"]["get"]})

    async def get(self, request: Request) -> Response:
        prediction = self.emulator.get(request.path_params["id"])
        return JSONResponse(self.emulator.render(prediction, base_url(request)))

    async def cancel(self, request: Request) -> Response:
        prediction = self.emulator.cancel(request.path_params["id"])
        return JSONResponse(self.emulator.render(prediction, base_url(request)))

    async def list(self, request: Request) -> Response:
        page = self.emulator.page(
            base_url(request),
            cursor=request.query_params.get("cursor"),
            created_after=_timestamp(request, "created_after"),
            created_before=_timestamp(request, "created_before"),
        )
        return JSONResponse(page)

    async def webhook_secret(self, request: Request) -> Response:
        return JSONResponse({"key": self.emulator.config.webhook_secret})

    async def file(self, request: Request) -> Response:
        spec = self.emulator.output_file(request.path_params["id"], request.path_params["name"])
        if isinstance(spec, BlobFile):
            headers = {"Content-Length": str(spec.size_bytes)}
            return StreamingResponse(
                _stream(spec.size_bytes), headers=headers, media_type=spec.content_type
            )
        # Drawing takes tens of milliseconds per megapixel: keep it off the event loop.
        if isinstance(spec, ImageFile):
            content = await asyncio.to_thread(render_image, spec)
        else:
            content = await asyncio.to_thread(render_audio, spec)
        return Response(content, media_type=spec.content_type)


async def _stream(size_bytes: int) -> AsyncIterator[bytes]:
    for chunk in blob_chunks(size_bytes):
        yield chunk
