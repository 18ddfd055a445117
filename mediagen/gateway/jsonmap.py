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
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from mediagen.gateway.values import TEXT_MESSAGE_TYPES, descriptor_of, is_map, message_type_of


class BadBody(ValueError):
    """The request body is not JSON, or does not fit the request message."""


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
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadBody(f"request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise BadBody("request body is nested too deeply") from exc
    if body == "*":
        if not isinstance(value, dict):
            raise BadBody("request body must be a JSON object")
        document = value
    else:
        document = {descriptor_of(message).fields_by_name[body].json_name: value}
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
