"""The grpc.aio server: the service, grpc.health.v1 and server reflection.

Health (:mod:`mediagen.health.servicer`): ``grpc.health.v1.Health`` is liveness, SERVING while
the process runs; ``""`` and the service's own name are readiness, following the dependency
checks when a :class:`~mediagen.health.checker.HealthChecker` is given. On shutdown every name
turns NOT_SERVING first (load balancers and probes stop sending), open WatchJob streams are
told to end, and in-flight calls get ``grace_s`` to finish.

Limits: requests and responses are at most ``max_message_bytes`` each (gRPC itself answers
RESOURCE_EXHAUSTED past them, which is expected for an oversized request), request metadata at
most :data:`MAX_METADATA_BYTES`; requests that do not decode are INVALID_ARGUMENT
(:mod:`mediagen.api.decoding`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mediagen.api.decoding import DecodeRequests
from mediagen.api.request_ids import RequestIds
from mediagen.api.servicer import MediaGenerationServicer
from mediagen.config import TLSSettings
from mediagen.health.checker import HealthChecker
from mediagen.health.servicer import SERVING, HealthServicer
from mediagen.net import cannot_listen, port_in_use
from mediagen.tls import grpc_server_credentials
from mediagen.v1 import media_generation_service_pb2 as pb
from mediagen.v1 import media_generation_service_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["MediaGenerationService"].full_name

#: Keep idle WatchJob streams alive through proxies, and accept clients' keepalive pings.
SERVER_OPTIONS: Sequence[tuple[str, int]] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # gRPC sets SO_REUSEPORT by default: a second server on a taken port would bind beside the
    # first and take half of its calls (to another database, say). Off, a taken port fails.
    ("grpc.so_reuseport", 0),
)
#: Request metadata a caller may send (gRPC's soft limit; its hard limit is 1.25 times this).
#: Above the gateway's forwarded headers (16 KiB of HTTP headers by default) plus gRPC's own.
MAX_METADATA_BYTES = 32 * 1024
#: Default for ``max_message_bytes`` (gRPC's own default for received messages).
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class GrpcServer:
    """A started gRPC server and its health servicer."""

    def __init__(self, server: grpc.aio.Server, health_servicer: HealthServicer, port: int) -> None:
        self.server = server
        self.health = health_servicer
        self.port = port

    async def stop(self, grace_s: float, servicer: MediaGenerationServicer | None = None) -> None:
        """NOT_SERVING first (probes and balancers stop sending), then end the WatchJob streams
        cleanly, then give the remaining calls what is left of ``grace_s``."""
        await self.health.enter_graceful_shutdown()
        started = time.monotonic()
        if servicer is not None:
            await servicer.close_streams(grace_s)
        await self.server.stop(max(0.0, grace_s - (time.monotonic() - started)))


async def start_grpc_server(
    host: str,
    port: int,
    *,
    servicer: MediaGenerationServicer | None,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    tls: TLSSettings | None = None,
    unix_socket: Path | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    checker: HealthChecker | None = None,
) -> GrpcServer:
    """Bind and start. Without a servicer it serves health only (a worker's probe endpoint).
    With ``checker`` readiness follows its dependency checks; without, it is always SERVING.

    Every call gets a request id first (:mod:`mediagen.api.request_ids`), then ``interceptors``
    run in order around it (authentication first: see wiring), then request decoding
    (undecodable bytes are INVALID_ARGUMENT, not UNKNOWN). With ``tls`` the port speaks TLS
    only (mTLS with a client CA). ``unix_socket`` adds a plaintext listener on that path, for a
    caller in the same process (the embedded gateway); its directory's permissions are what
    guards it.
    """
    options = [
        *SERVER_OPTIONS,
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_metadata_size", MAX_METADATA_BYTES),
    ]
    server = grpc.aio.server(
        interceptors=[RequestIds(), *interceptors, DecodeRequests()], options=options
    )
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [health.SERVICE_NAME, reflection.SERVICE_NAME]
    if servicer is not None:
        pb_grpc.add_MediaGenerationServiceServicer_to_server(servicer, server)
        names.append(SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    bound = _bind(server, host, port, tls)
    if unix_socket is not None and server.add_insecure_port(f"unix:{unix_socket}") == 0:
        raise OSError(f"cannot listen on {unix_socket}")
    # Every status is set before the first call can ask: no moment of SERVING by default.
    readiness = ["", *([SERVICE_NAME] if servicer is not None else [])]
    for name in (n for n in names if n not in readiness):
        await health_servicer.set(name, SERVING)
    if checker is not None:
        await checker.attach(health_servicer, readiness)
    else:
        for name in readiness:
            await health_servicer.set(name, SERVING)
    await server.start()
    return GrpcServer(server, health_servicer, bound)


def _bind(server: grpc.aio.Server, host: str, port: int, tls: TLSSettings | None) -> int:
    """Add the TCP port; :class:`~mediagen.net.CannotListen` naming it if that fails."""
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    credentials = grpc_server_credentials(tls) if tls is not None else None
    try:
        bound = (
            server.add_secure_port(address, credentials)
            if credentials is not None
            else server.add_insecure_port(address)
        )
    except RuntimeError:  # gRPC says only "Failed to bind": find out why, to say it
        bound = 0
    if bound == 0:
        raise cannot_listen("gRPC", host, port, port_in_use(host, port))
    return bound
