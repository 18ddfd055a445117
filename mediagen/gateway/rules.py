"""HTTP bindings read from the ``google.api.http`` option of each method of a service.

A method's rule and each of its ``additional_bindings`` become one :class:`Binding`. The rule's
field references (path variables, ``body``, ``response_body``) are checked against the request
and response messages when the gateway is built, so a broken annotation fails at start-up, not
per request. Methods without a rule are not exposed (grpc-gateway's default), nor are
client-streaming methods. No I/O here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import google.api.annotations_pb2 as annotations_pb2
import google.api.http_pb2 as http_pb2
from google.protobuf.descriptor import (
    Descriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)

from mediagen.gateway.routes import PathTemplate, TemplateError, parse_template

log = logging.getLogger(__name__)

# The ``google.api.http`` extension. Typed loosely: googleapis' stubs declare extensions as plain
# field descriptors, which ``Extensions[...]`` does not accept.
_HTTP: Any = annotations_pb2.http


class RuleError(ValueError):
    """A ``google.api.http`` rule refers to fields that do not exist or cannot be bound."""


@dataclass(frozen=True)
class Binding:
    """One way to reach a method over HTTP."""

    method: MethodDescriptor
    http_method: str  # upper case: GET, POST, ... or a custom verb
    template: PathTemplate
    body: str  # "" (no body), "*" (whole request) or a top-level request field name
    response_body: str  # "" (whole response) or a top-level response field name
    index: int  # 0 for the rule itself, 1.. for its additional_bindings

    @property
    def path_fields(self) -> tuple[str, ...]:
        """Field paths (proto names) bound by the path."""
        return tuple(v.field_path for v in self.template.variables)


def bindings_for(service: ServiceDescriptor) -> list[Binding]:
    """Every binding of every annotated, non-client-streaming method of ``service``."""
    found: list[Binding] = []
    for method in service.methods:
        options = method.GetOptions()
        if not options.HasExtension(_HTTP):
            continue
        if method.client_streaming:
            log.warning("%s is client-streaming: not exposed over HTTP", method.full_name)
            continue
        rule: http_pb2.HttpRule = options.Extensions[_HTTP]
        found.extend(_bindings_of_rule(method, rule))
    return found


def _bindings_of_rule(method: MethodDescriptor, rule: http_pb2.HttpRule) -> Iterable[Binding]:
    yield _binding(method, rule, 0)
    for i, extra in enumerate(rule.additional_bindings, start=1):
        if extra.additional_bindings:
            raise RuleError(f"{method.full_name}: additional_bindings must not nest")
        yield _binding(method, extra, i)


def _binding(method: MethodDescriptor, rule: http_pb2.HttpRule, index: int) -> Binding:
    kind = rule.WhichOneof("pattern")
    if kind is None:
        raise RuleError(f"{method.full_name}: HTTP rule has no pattern")
    if kind == "custom":
        http_method, path = rule.custom.kind.upper(), rule.custom.path
    else:
        http_method, path = kind.upper(), getattr(rule, kind)
    try:
        template = parse_template(path)
    except TemplateError as exc:
        raise RuleError(f"{method.full_name}: {exc}") from exc
    for var in template.variables:
        _check_path_field(method, var.field_path)
    if rule.body not in ("", "*"):
        _top_level_field(method, method.input_type, rule.body, "body")
    if rule.response_body:
        _top_level_field(method, method.output_type, rule.response_body, "response_body")
    return Binding(method, http_method, template, rule.body, rule.response_body, index)


def _top_level_field(
    method: MethodDescriptor, message: Descriptor, name: str, what: str
) -> FieldDescriptor:
    field = message.fields_by_name.get(name)
    if field is None:
        raise RuleError(f"{method.full_name}: {what} {name!r} is not a field of {message.name}")
    return field


def resolve_field_path(message: Descriptor, path: str) -> list[FieldDescriptor] | None:
    """The fields along a dotted path of proto names, or None if one does not exist."""
    fields: list[FieldDescriptor] = []
    current: Descriptor | None = message
    for name in path.split("."):
        if current is None:
            return None
        field = current.fields_by_name.get(name)
        if field is None:
            return None
        fields.append(field)
        current = field.message_type
    return fields


def _check_path_field(method: MethodDescriptor, path: str) -> None:
    fields = resolve_field_path(method.input_type, path)
    if fields is None:
        raise RuleError(f"{method.full_name}: path variable {path!r} is not a request field")
    for field in fields:
        if field.is_repeated:
            raise RuleError(f"{method.full_name}: path variable {path!r} is repeated or a map")
    for field in fields[:-1]:
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            raise RuleError(f"{method.full_name}: {path!r} goes through a non-message field")
