"""``GET /api/v1/health``: the upstream gRPC server's grpc.health.v1 Check, with its components.

The body is ``{"status": <ServingStatus name>, "components": [...]}``: first ``api`` (the
gRPC server behind the gateway, with the Check's round-trip time), then what that server
reports of its own dependencies (:mod:`mediagen.health.report`). 200 when SERVING, else 503;
an unknown ``service`` is 404, as grpc-gateway maps NOT_FOUND.
"""

from __future__ import annotations

import time
from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from starlette.types import Scope, Send

from mediagen.gateway import asgi, errors, jsonmap
from mediagen.health import report

PATH = "/api/v1/health"
CHECK = "/grpc.health.v1.Health/Check"
#: The component naming the gRPC server itself.
API_COMPONENT = "api"


def body(status: str, api: report.Entry, components: list[report.Entry]) -> dict[str, Any]:
    return {"status": status, "components": [api, *components]}


class HealthRoute:
    """Answers the health route through ``channel``, each Check bounded by ``timeout_s``."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._check = channel.unary_unary(
            CHECK,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )

    async def __call__(self, scope: Scope, send: Send) -> None:
        service = next((v for k, v in reversed(asgi.query_params(scope)) if k == "service"), "")
        started = time.monotonic()
        call = self._check(health_pb2.HealthCheckRequest(service=service), timeout=self.timeout_s)
        try:
            response = await call
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:  # no such service: the caller's mistake
                await asgi.send_status(send, errors.status_from_rpc_error(exc))
                return
            latency_s = time.monotonic() - started
            # The code only: the details name internal addresses, and this route is public.
            error = exc.code().name
            api = report.entry(API_COMPONENT, up=False, latency_s=latency_s, error=error)
            await asgi.send_json(send, 503, jsonmap.dumps(body(report.NOT_SERVING, api, [])))
            return
        latency_s = time.monotonic() - started
        trailing = await call.trailing_metadata()
        reported = dict(trailing or ()).get(report.METADATA_KEY, "")
        components = report.decode(reported) if isinstance(reported, str) else []
        name = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        serving = response.status == health_pb2.HealthCheckResponse.SERVING
        api = report.entry(API_COMPONENT, up=True, latency_s=latency_s)
        await asgi.send_json(
            send, 200 if serving else 503, jsonmap.dumps(body(name, api, components))
        )
