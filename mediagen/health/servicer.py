"""grpc.health.v1 with mediagen's service names, and the component report on every Check.

Names and what they mean (the same on the API's port and a worker's health port):

- :data:`LIVENESS` (``grpc.health.v1.Health``): SERVING while the process answers; NOT_SERVING
  only once it is shutting down. Kubernetes' liveness and startup probes ask for it, so a dead
  dependency never restarts a pod.
- ``""`` (the server as a whole) and, on the API, ``mediagen.v1.MediaGenerationService``:
  SERVING while every dependency the process uses (database, Redis, storage) answers its
  probe (:mod:`mediagen.health.checker`). Readiness probes and load balancers ask for these.
"""

from __future__ import annotations

from typing import Any

from grpc_health.v1 import health, health_pb2

from mediagen.health import report
from mediagen.health.status import Component

LIVENESS = health.SERVICE_NAME
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthServicer(health.aio.HealthServicer):  # type: ignore[misc]  # grpc_health is untyped
    """grpcio's servicer, whose Check also sends the latest component report as trailing
    metadata (:data:`mediagen.health.report.METADATA_KEY`), for the gateway's health route."""

    def __init__(self) -> None:
        super().__init__()
        self._report = report.encode(())

    def publish(self, components: tuple[Component, ...]) -> None:
        self._report = report.encode(components)

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: Any
    ) -> health_pb2.HealthCheckResponse:
        context.set_trailing_metadata(((report.METADATA_KEY, self._report),))
        response: health_pb2.HealthCheckResponse = await super().Check(request, context)
        return response
