"""Proto3 JSON with grpc-gateway's defaults: request bodies in, responses out.

Out: lowerCamelCase keys (or ``json_name``), enums as names, int64 as strings, every field
without presence written even when it holds its default (``0``, ``""``, ``false``, ``[]``,
``{}``). Unset message fields and unset ``optional`` scalars are left out (Go writes ``null``
for an unset message; see the package docstring).

In: either the proto name or the JSON name of a field, enums by name or number, unknown fields
ignored. No I/O here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from mediagen.errors import bounded
from mediagen.gateway.values import TEXT_MESSAGE_TYPES, descriptor_of, is_map, message_type_of

#: The BadRequest field named when the body as a whole is wrong (not UTF-8, not JSON).
BODY_FIELD = "body"


class BadBody(ValueError):
    """The request body is not JSON, or does not fit the request message; ``field`` is the
    proto path of the culprit when one is known."""

    def __init__(self, message: str, *, field: str = "", description: str = "") -> None:
        super().__init__(message)
        self.field = field
        self.description = description or message


class _NonFinite:
    """Stands for a ``NaN``/``Infinity`` literal while the body is parsed, to find its path."""

    def __init__(self, literal: str) -> None:
        self.literal = literal


class RenderError(RuntimeError):
    """A response message cannot be written as JSON (for example an Any of an unknown type)."""


def parse_body(raw: bytes, message: Message, body: str) -> None:
    """Merge a JSON request body into ``message``.

    ``body`` is the rule's body: ``"*"`` (the body is the whole request) or a top-level field
    name (the body is that field's value). An empty body leaves the message as it is.
    """
    if not raw.strip():
        return
    try:
        text = raw.decode("utf-8-sig")  # RFC 8259: UTF-8 (a BOM is tolerated)
    except UnicodeDecodeError as exc:
        raise BadBody(f"request body is not valid UTF-8 (byte {exc.start})") from exc
    try:
        value = json.loads(text, parse_constant=_NonFinite)
    except json.JSONDecodeError as exc:
        raise BadBody(f"request body is not valid JSON: {exc}") from exc
    except ValueError as exc:  # an integer past Python's 4300-digit conversion limit
        raise BadBody(f"request body holds a number that cannot be read: {exc}") from exc
    except RecursionError as exc:
        raise BadBody("request body is nested too deeply") from exc
    if body != "*":
        value = {descriptor_of(message).fields_by_name[body].name: value}
    _refuse_non_finite(value, descriptor_of(message))
    if not isinstance(value, dict):
        raise BadBody("request body must be a JSON object")
    document = value
    _check_shape(document, descriptor_of(message), "")
    try:
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise BadBody(str(exc)) from exc
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:
        # json_format lets a few malformed inputs through as these (for example a list where
        # a message belongs); they are the caller's mistake all the same.
        name = descriptor_of(message).full_name
        raise BadBody(f"request body does not match {name}") from exc


def _refuse_non_finite(document: object, message: Descriptor) -> None:
    """400 naming the field (proto path) of the first ``NaN``/``Infinity`` literal."""
    pending: list[tuple[object, Descriptor | None, str]] = [(document, message, "")]
    while pending:
        value, descriptor, path = pending.pop()
        if isinstance(value, _NonFinite):
            where = path or BODY_FIELD
            raise BadBody(
                f"{where}: {value.literal} is not JSON; a double field takes it as the string "
                f'"{value.literal}"',
                field=where,
                description=f"{value.literal} is not a JSON number",
            )
        pending.extend(_children(value, descriptor, path))


def _children(
    value: object, descriptor: Descriptor | None, path: str
) -> Iterator[tuple[object, Descriptor | None, str]]:
    """The items of a JSON array or object, each with its message type (None inside a Struct
    or a scalar) and its proto path."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield item, descriptor, f"{path}[{i}]"
        return
    if not isinstance(value, dict):
        return
    fields: dict[str, FieldDescriptor] = {}
    if descriptor is not None:
        fields = {f.json_name: f for f in descriptor.fields}
        fields.update(descriptor.fields_by_name)
    for key, item in value.items():
        field = fields.get(key)
        name = field.name if field is not None else bounded(key, 80)
        where = f"{path}.{name}" if path else name
        if field is not None and is_map(field) and isinstance(item, dict):
            inner = _plain_type(message_type_of(field).fields_by_name["value"])
            for entry_key, entry in item.items():
                yield entry, inner, f"{where}[{bounded(entry_key, 80)!r}]"
        else:
            yield item, _plain_type(field), where


def _plain_type(field: FieldDescriptor | None) -> Descriptor | None:
    return field.message_type if field is not None and _is_plain_message(field) else None


def _check_shape(value: dict[str, Any], message: Descriptor, path: str) -> None:
    """Refuse arrays where objects belong and the reverse, which json_format lets through."""
    fields = {f.json_name: f for f in message.fields}
    fields.update(message.fields_by_name)
    for key, item in value.items():
        field = fields.get(key)
        if field is None or item is None:
            continue
        where = f"{path}{key}"
        if is_map(field) or (field.is_repeated and field.type == FieldDescriptor.TYPE_MESSAGE):
            _check_container(field, item, where)
        elif field.is_repeated:
            if not isinstance(item, list):
                raise BadBody(f"{where}: expected an array")
        elif _is_plain_message(field):
            if not isinstance(item, dict):
                raise BadBody(f"{where}: expected an object")
            _check_shape(item, message_type_of(field), where + ".")


def _is_plain_message(field: FieldDescriptor) -> bool:
    message_type = field.message_type
    return message_type is not None and message_type.full_name not in TEXT_MESSAGE_TYPES


def _check_container(field: FieldDescriptor, item: object, where: str) -> None:
    if is_map(field):
        if not isinstance(item, dict):
            raise BadBody(f"{where}: expected an object")
        value_field = message_type_of(field).fields_by_name["value"]
        if _is_plain_message(value_field):
            for key, entry in item.items():
                if not isinstance(entry, dict):
                    raise BadBody(f"{where}.{key}: expected an object")
                _check_shape(entry, message_type_of(value_field), f"{where}.{key}.")
        return
    if not isinstance(item, list):
        raise BadBody(f"{where}: expected an array")
    if _is_plain_message(field):
        for i, entry in enumerate(item):
            if not isinstance(entry, dict):
                raise BadBody(f"{where}[{i}]: expected an object")
            _check_shape(entry, message_type_of(field), f"{where}[{i}].")


def message_to_obj(message: Message) -> dict[str, Any]:
    """A message as a JSON-ready dict, with grpc-gateway's defaults."""
    try:
        return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
    except (TypeError, ValueError, KeyError) as exc:
        name = descriptor_of(message).full_name
        raise RenderError(f"cannot write {name} as JSON") from exc


def response_to_obj(response: Message, response_body: str) -> object:
    """The HTTP body of a response: the whole message, or its ``response_body`` field."""
    if not response_body:
        return message_to_obj(response)
    field = descriptor_of(response).fields_by_name[response_body]
    if field.message_type is not None and not field.is_repeated:
        return message_to_obj(getattr(response, response_body))
    return message_to_obj(response).get(field.json_name)


def dumps(value: object) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
