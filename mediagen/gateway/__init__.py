"""JSON/HTTP gateway: a grpc-gateway-style transcoder driven by ``google.api.http`` rules.

Routes are read from the compiled descriptors of the services it is given (by default
``mediagen.v1.MediaGenerationService``), so an annotated RPC added to the proto is served over
HTTP with no change here. Calls go through a ``grpc.aio.Channel``: server interceptors see
HTTP callers exactly as they see gRPC ones.

Choices, grpc-gateway v2's defaults unless noted (``../shared/reference/grpc.md`` section 1):

- JSON out: proto3 JSON mapping with lowerCamelCase keys, enums as value names, 64-bit integers
  as strings, and every field without presence written even when it is zero, empty or ``[]``
  (``EmitUnpopulated``). **Difference from Go:** an unset message field (and an unset
  ``optional`` scalar) is *left out* where Go's protojson writes ``null``; clients should treat
  a missing key and ``null`` alike.
- JSON in: proto names and JSON names both accepted, enums by name or number, unknown fields
  ignored (``DiscardUnknown``). An empty body counts as ``{}``. A body must be sent as
  ``Content-Type: application/json`` (415 otherwise, which also stops cross-site form posts);
  over ``MEDIAGEN_HTTP_MAX_BODY_BYTES`` it gets 413. The JSON literals ``NaN`` and
  ``Infinity`` are not JSON (proto3 JSON writes them as strings) and get 400.
- Path variables win over body fields of the same name; query parameters are bound for fields
  that are neither in the path nor the body, named by dotted proto or JSON names; unknown
  parameters are ignored. Routing prefers the template whose ``:verb`` matches, then the one
  with more literal segments, so it does not depend on declaration order.
- Errors: ``{"code", "message", "details"}`` with the HTTP status of
  :data:`mediagen.errors.HTTP_STATUS`; ``Retry-After`` from RetryInfo on 429/503; malformed JSON,
  path or query values are 400 INVALID_ARGUMENT (with a BadRequest detail naming the field);
  no route is 404 NOT_FOUND; a wrong method is 405 with an UNIMPLEMENTED body and ``Allow``.
- Streams: NDJSON ``{"result": ...}`` lines with ``Content-Type: application/x-ndjson`` (Go
  says ``application/json``), or SSE on ``Accept: text/event-stream``; see
  :mod:`.streaming`.
- Headers: see :mod:`.metadata`. Not implemented: trailers as ``Grpc-Trailer-*``,
  ``X-HTTP-Method-Override``, client-streaming methods, ``google.api.HttpBody``.

Public API: :func:`build_gateway_app`, :func:`start_gateway` / :class:`RunningGateway` (embedded)
and :func:`run_gateway` (``mediagen gateway``).
"""

from mediagen.gateway.app import GatewayApp, build_gateway_app
from mediagen.gateway.server import RunningGateway, run_gateway, start_gateway
from mediagen.gateway.streaming import StreamOptions

__all__ = [
    "GatewayApp",
    "RunningGateway",
    "StreamOptions",
    "build_gateway_app",
    "run_gateway",
    "start_gateway",
]
