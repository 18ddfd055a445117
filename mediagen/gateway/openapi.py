"""The OpenAPI 3.0 document, generated from the same bindings the gateway routes by.

It follows protoc-gen-openapiv2 where OpenAPI 3 allows: one operation per binding
(``Service_Method``, additional bindings numbered from 2), proto comments as descriptions (the
first sentence of a method's comment is its summary), path variables as path parameters, every
field neither in the path nor the body as a query parameter (dotted proto names, message fields
expanded leaf by leaf), the body from ``body``, the response from ``response_body``, and a
``default`` response of ``google.rpc.Status`` (401, 403 and 429 named, with the
``WWW-Authenticate`` and ``Retry-After`` headers the gateway adds). A server-streaming method's
200 response is documented as the ``{"result": ...}`` / ``{"error": ...}`` NDJSON line
("Stream result of X") and as ``text/event-stream``. Message schemas come from
:mod:`~mediagen.gateway.schemas`. It is 3.0 rather than 3.1 because the packaged Swagger UI
(4.x) reads 3.0. No I/O here.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import google.api.field_behavior_pb2 as field_behavior_pb2
import google.rpc.status_pb2 as status_pb2
from google.protobuf.descriptor import Descriptor, ServiceDescriptor
from grpc_health.v1 import health_pb2

from mediagen.gateway.routes import PathTemplate
from mediagen.gateway.rules import Binding, resolve_field_path
from mediagen.gateway.schemas import SCALARS, WRAPPED_TYPE, Schema, SchemaSet, behaviors
from mediagen.gateway.streaming import EVENT_STREAM, NDJSON, StreamOptions, streamed_type
from mediagen.gateway.values import JSON_TEXT_TYPES, TEXT_MESSAGE_TYPES, descriptor_of, is_map

OPENAPI_VERSION = "3.0.3"
_MAX_QUERY_DEPTH = 4

#: How query parameters of well-known types are written (differs from JSON for Duration).
_QUERY_WELL_KNOWN: dict[str, Schema] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {
        "type": "string",
        "description": "A Go duration: `1.5s`, `90m`, `1h30m`.",
    },
    "google.protobuf.FieldMask": {"type": "string", "description": "Comma-separated paths."},
    **{name: {"type": "string", "description": "JSON text."} for name in JSON_TEXT_TYPES},
}


def openapi_path(template: PathTemplate) -> tuple[str, list[tuple[str, str | None]]]:
    """The OpenAPI path of a template and its parameters (name, pattern for multi-segment)."""
    starts = {v.start: v for v in template.variables}
    pieces: list[str] = []
    params: list[tuple[str, str | None]] = []
    i = 0
    while i < len(template.segments):
        var = starts.get(i)
        if var is not None:
            inner = template.segments[var.start : var.end]
            single = len(inner) == 1 and inner[0].kind == "*"
            regex = "/".join(_regex(s.kind, s.value) for s in inner)
            pattern = None if single else f"^{regex}$"
            pieces.append("{" + var.field_path + "}")
            params.append((var.field_path, pattern))
            i = var.end
            continue
        segment = template.segments[i]
        if segment.kind == "literal":
            pieces.append(segment.value)
        else:
            name = f"segment{i}"
            pieces.append("{" + name + "}")
            params.append((name, None if segment.kind == "*" else "^.*$"))
        i += 1
    path = "/" + "/".join(pieces)
    return (path + ":" + template.verb if template.verb else path), params


def _regex(kind: str, value: str) -> str:
    if kind == "*":
        return "[^/]+"
    if kind == "**":
        return ".*"
    return "".join("\\" + c if c in ".^$*+?()[]{}|\\" else c for c in value)


def _summary_and_description(comment: str) -> dict[str, str]:
    """The comment's first sentence as the summary, the whole comment as the description."""
    if not comment:
        return {}
    paragraph = comment.split("\n\n", 1)[0].replace("\n", " ")
    sentence, dot, _ = paragraph.partition(". ")
    return {"summary": sentence + dot.strip(), "description": comment}


class _Builder:
    def __init__(self, comments: Mapping[str, str]) -> None:
        self.comments = comments
        self.schemas = SchemaSet(comments)
        self.status = self.schemas.message(descriptor_of(status_pb2.Status()))

    def query_params(
        self, message: Descriptor, excluded: Collection[str], prefix: str = "", depth: int = 0
    ) -> list[Schema]:
        params: list[Schema] = []
        for field in message.fields:
            path = prefix + field.name
            if path in excluded or is_map(field):
                continue
            sub = field.message_type
            kind = sub.full_name if sub is not None else ""
            if sub is not None and kind not in TEXT_MESSAGE_TYPES:
                if not field.is_repeated and depth < _MAX_QUERY_DEPTH:
                    params += self.query_params(sub, excluded, path + ".", depth + 1)
                continue
            schema = self._query_schema(field, kind)
            param: Schema = {"name": path, "in": "query", "schema": schema}
            if field.is_repeated:
                param.update(style="form", explode=True)
            if field_behavior_pb2.REQUIRED in behaviors(field):
                param["required"] = True
            description = self.comments.get(field.full_name)
            if description:
                param["description"] = description
            params.append(param)
        return params

    def _query_schema(self, field: Any, kind: str) -> Schema:
        if kind in _QUERY_WELL_KNOWN:
            single = dict(_QUERY_WELL_KNOWN[kind])
        elif kind in WRAPPED_TYPE:
            single = dict(SCALARS[WRAPPED_TYPE[kind]])
        else:
            single = self.schemas.single(field)
        return {"type": "array", "items": single} if field.is_repeated else single

    def operation(self, binding: Binding, stream: StreamOptions | None) -> Schema:
        method = binding.method
        service = method.containing_service
        suffix = str(binding.index + 1) if binding.index else ""
        op: Schema = {
            "operationId": f"{service.name}_{method.name}{suffix}",
            "tags": [service.name],
            **_summary_and_description(self.comments.get(method.full_name, "")),
        }
        parameters = self._path_params(binding)
        excluded = set(binding.path_fields)
        if binding.body not in ("", "*"):
            excluded.add(binding.body)
        if binding.body != "*":
            parameters += self.query_params(method.input_type, excluded)
        if stream is not None and stream.resume_field:
            parameters.append(
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                    "description": f"Resume a stream: sets `{stream.resume_field}`.",
                }
            )
        if parameters:
            op["parameters"] = parameters
        if binding.body:
            op["requestBody"] = self._request_body(binding)
        op["responses"] = {
            "200": self._success(binding),
            **self.refusals(),
            "default": {"description": "An unexpected error response.", **self.json(self.status)},
        }
        return op

    def refusals(self) -> Schema:
        """The refusals every RPC may answer before it runs (authentication, roles, limits),
        with the headers the gateway adds to them."""
        seconds = {"type": "string", "pattern": "^[0-9]+$"}
        return {
            "401": {
                "description": "UNAUTHENTICATED: no key, or a malformed, unknown or revoked one "
                "(when the server requires credentials).",
                "headers": {
                    "WWW-Authenticate": {
                        "description": "`Bearer`: send `Authorization: Bearer <key>`.",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                },
                **self.json(self.status),
            },
            "403": {
                "description": "PERMISSION_DENIED: the key's role may not make this call.",
                **self.json(self.status),
            },
            "429": {
                "description": "RESOURCE_EXHAUSTED: a limit of the caller's tenant was reached; "
                "try again after `Retry-After`.",
                "headers": {
                    "Retry-After": {
                        "description": "Seconds to wait (from the error's RetryInfo).",
                        "schema": seconds,
                    }
                },
                **self.json(self.status),
            },
        }

    def _path_params(self, binding: Binding) -> list[Schema]:
        _, names = openapi_path(binding.template)
        params: list[Schema] = []
        fields = {v.field_path: v for v in binding.template.variables}
        for name, pattern in names:
            schema: Schema = {"type": "string"}
            param: Schema = {"name": name, "in": "path", "required": True, "schema": schema}
            if name in fields:
                path = resolve_field_path(binding.method.input_type, name)
                if path:
                    leaf = path[-1]
                    schema = self.schemas.single(leaf)
                    param["schema"] = schema
                    description = self.comments.get(leaf.full_name)
                    if description:
                        param["description"] = description
            if pattern is not None:
                param["schema"] = {"type": "string", "pattern": pattern}
            params.append(param)
        return params

    def _request_body(self, binding: Binding) -> Schema:
        request = binding.method.input_type
        if binding.body == "*":
            top_level = {p for p in binding.path_fields if "." not in p}
            if top_level:
                schema = self.schemas.object(request, exclude=top_level)
            else:
                schema = self.schemas.message(request)
            required = bool(self.schemas.object(request, exclude=top_level).get("required"))
        else:
            field = request.fields_by_name[binding.body]
            schema = self.schemas.value(field)
            required = field_behavior_pb2.REQUIRED in behaviors(field)
        return {"required": required, **self.json(schema)}

    def _success(self, binding: Binding) -> Schema:
        output = binding.method.output_type
        if binding.response_body:
            item = self.schemas.value(output.fields_by_name[binding.response_body])
        else:
            item = self.schemas.message(output)
        if not binding.method.server_streaming:
            return {"description": "A successful response.", **self.json(item)}
        title = f"Stream result of {streamed_type(binding).full_name}"
        line = {
            "type": "object",
            "title": title,
            "properties": {"result": item, "error": self.status},
        }
        return {
            "description": "A stream: one JSON object per line, or Server-Sent Events when the "
            "request accepts text/event-stream.",
            "content": {
                NDJSON: {"schema": line},
                EVENT_STREAM: {"schema": {"type": "string"}},
            },
        }

    @staticmethod
    def json(schema: Schema) -> Schema:
        return {"content": {"application/json": {"schema": schema}}}


def build_openapi(
    bindings: Sequence[Binding],
    services: Sequence[ServiceDescriptor],
    *,
    comments: Mapping[str, str],
    stream_options: Mapping[str, StreamOptions] | None = None,
    health_path: str | None = None,
    files_prefix: str | None = None,
    title: str | None = None,
    version: str | None = None,
) -> dict[str, Any]:
    """The OpenAPI document for ``bindings`` (and the gateway's own routes, when given)."""
    builder = _Builder(comments)
    paths: dict[str, dict[str, Any]] = {}
    for binding in bindings:
        path, _ = openapi_path(binding.template)
        item = paths.setdefault(path, {})
        verb = binding.http_method.lower()
        if verb in item or verb not in {"get", "put", "post", "delete", "patch"}:
            continue  # a duplicate binding, or a custom verb OpenAPI cannot express
        stream = None
        if binding.method.server_streaming:
            stream = (stream_options or {}).get(binding.method.full_name)
        item[verb] = builder.operation(binding, stream)
    if health_path:
        paths[health_path] = {"get": _health_operation(builder)}
    if files_prefix:
        paths[files_prefix.rstrip("/") + "/{key}"] = {"get": _files_operation(builder)}
    packages = sorted({s.file.package for s in services})
    tags: list[dict[str, str]] = []
    for service in services:
        tag = {"name": service.name}
        if service.full_name in comments:
            tag["description"] = comments[service.full_name]
        tags.append(tag)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title or ", ".join(s.full_name for s in services) or "gateway",
            "version": version or (packages[0].rsplit(".", 1)[-1] if packages else "0"),
        },
        "tags": tags,
        "paths": {path: item for path, item in paths.items() if item},
        "components": {"schemas": dict(sorted(builder.schemas.components.items()))},
    }


def _health_operation(builder: _Builder) -> Schema:
    statuses = list(health_pb2.HealthCheckResponse.ServingStatus.keys())
    component = {
        "type": "object",
        "properties": {
            "name": {
                "type": "string",
                "description": "api (the gRPC server), database, redis or storage.",
            },
            "status": {"type": "string", "enum": ["SERVING", "NOT_SERVING"]},
            "latency_ms": {
                "type": "number",
                "description": "Time of its latest check, in milliseconds.",
            },
            "error": {
                "type": "string",
                "description": "The kind of failure of its latest check, e.g. a gRPC code or "
                "an exception name (the message is in the server's log).",
            },
        },
        "required": ["name", "status", "latency_ms"],
    }
    body = {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": statuses},
            "components": {
                "type": "array",
                "items": component,
                "description": "The gRPC server first, then its dependencies.",
            },
        },
        "required": ["status", "components"],
    }
    return {
        "operationId": "Gateway_Health",
        "tags": ["Gateway"],
        "summary": "Readiness of the upstream gRPC server and of what it depends on "
        "(grpc.health.v1.Health/Check).",
        "parameters": [
            {
                "name": "service",
                "in": "query",
                "schema": {"type": "string"},
                "description": "The service to check; empty for the server as a whole.",
            }
        ],
        "responses": {
            "200": {"description": "SERVING.", **builder.json(body)},
            "503": {
                "description": "Not serving: a dependency is down, or the server cannot be "
                "reached.",
                **builder.json(body),
            },
            "default": {"description": "The check failed.", **builder.json(builder.status)},
        },
    }


def _files_operation(builder: _Builder) -> Schema:
    binary = {"content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}
    return {
        "operationId": "Gateway_GetFile",
        "tags": ["Gateway"],
        "summary": "Downloads a stored media file (local storage).",
        "description": (
            "Only through the signed, expiring URL a Media's `url` gives (403 otherwise). "
            "Supports Range (206, 416), If-Range and If-None-Match (304)."
        ),
        "parameters": [
            {
                "name": "key",
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": "The storage key; may contain `/`.",
            },
            {
                "name": "expires",
                "in": "query",
                "required": True,
                "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"},
                "description": "Unix time (seconds) after which the URL is refused.",
            },
            {
                "name": "signature",
                "in": "query",
                "required": True,
                "schema": {"type": "string"},
                "description": "HMAC-SHA256 of the key and `expires`, made by the service.",
            },
        ],
        "responses": {
            "200": {"description": "The file.", **binary},
            "206": {"description": "Part of the file.", **binary},
            "304": {"description": "Not modified."},
            "403": {
                "description": "The signature is missing, altered or expired.",
                **builder.json(builder.status),
            },
            "416": {"description": "Range not satisfiable."},
            "default": {"description": "No such file.", **builder.json(builder.status)},
        },
    }
