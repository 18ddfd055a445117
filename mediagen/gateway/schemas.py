"""JSON Schemas (OpenAPI 3.0 dialect) of proto messages, as the gateway writes and reads them.

Following protoc-gen-openapiv2's conventions: properties by JSON name; ``REQUIRED`` field
behaviour lists the field in ``required``, ``OUTPUT_ONLY`` marks it ``readOnly``; 64-bit
integers are strings; enums are string enums of their value names; the well-known types have
their JSON form (``Timestamp`` a date-time string, ``Struct`` an object, wrappers their scalar).
Messages become components named by full name (``mediagen.v1.Job``). No I/O here.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import google.api.field_behavior_pb2 as field_behavior_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from mediagen.gateway.values import enum_type_of, is_map, message_type_of

Schema = dict[str, Any]

# The ``google.api.field_behavior`` extension (typed loosely, as in rules.py).
_FIELD_BEHAVIOR: Any = field_behavior_pb2.field_behavior

_F = FieldDescriptor
_INT32 = {"type": "integer", "format": "int32"}
_UINT32 = {"type": "integer", "format": "int64", "minimum": 0, "maximum": 2**32 - 1}
_INT64 = {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
_UINT64 = {"type": "string", "format": "uint64", "pattern": "^[0-9]+$"}

SCALARS: dict[int, Schema] = {
    _F.TYPE_DOUBLE: {"type": "number", "format": "double"},
    _F.TYPE_FLOAT: {"type": "number", "format": "float"},
    _F.TYPE_INT32: _INT32,
    _F.TYPE_SINT32: _INT32,
    _F.TYPE_SFIXED32: _INT32,
    _F.TYPE_UINT32: _UINT32,
    _F.TYPE_FIXED32: _UINT32,
    _F.TYPE_INT64: _INT64,
    _F.TYPE_SINT64: _INT64,
    _F.TYPE_SFIXED64: _INT64,
    _F.TYPE_UINT64: _UINT64,
    _F.TYPE_FIXED64: _UINT64,
    _F.TYPE_BOOL: {"type": "boolean"},
    _F.TYPE_STRING: {"type": "string"},
    _F.TYPE_BYTES: {"type": "string", "format": "byte"},
}

#: Well-known types written inline, by their JSON form.
WELL_KNOWN: dict[str, Schema] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {
        "type": "string",
        "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$",
        "description": "A duration in seconds with up to nine fractional digits, e.g. `1.5s`.",
    },
    "google.protobuf.FieldMask": {
        "type": "string",
        "description": "Comma-separated field paths in lowerCamelCase.",
    },
    "google.protobuf.Struct": {"type": "object", "additionalProperties": {}},
    "google.protobuf.Value": {"description": "Any JSON value."},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Empty": {"type": "object"},
}
#: The scalar type of each wrapper (``mediagen.gateway.values.WRAPPERS``).
WRAPPED_TYPE = {
    "google.protobuf.DoubleValue": _F.TYPE_DOUBLE,
    "google.protobuf.FloatValue": _F.TYPE_FLOAT,
    "google.protobuf.Int64Value": _F.TYPE_INT64,
    "google.protobuf.UInt64Value": _F.TYPE_UINT64,
    "google.protobuf.Int32Value": _F.TYPE_INT32,
    "google.protobuf.UInt32Value": _F.TYPE_UINT32,
    "google.protobuf.BoolValue": _F.TYPE_BOOL,
    "google.protobuf.StringValue": _F.TYPE_STRING,
    "google.protobuf.BytesValue": _F.TYPE_BYTES,
}
_ANY: Schema = {
    "type": "object",
    "description": "A message of any type, named by `@type`, with that message's fields.",
    "properties": {"@type": {"type": "string"}},
    "additionalProperties": {},
}


def behaviors(field: FieldDescriptor) -> frozenset[int]:
    """The field's ``google.api.field_behavior`` values."""
    values: Any = field.GetOptions().Extensions[_FIELD_BEHAVIOR]
    return frozenset(int(v) for v in values)


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _with_notes(schema: Schema, notes: Schema) -> Schema:
    """Attach description/readOnly to a schema; a ``$ref`` is wrapped (3.0 ignores siblings)."""
    if not notes:
        return schema
    if "$ref" in schema:
        return {"allOf": [schema], **notes}
    return {**schema, **notes}


class SchemaSet:
    """Builds component schemas on demand and keeps them in :attr:`components`."""

    def __init__(self, comments: Mapping[str, str]) -> None:
        self.comments = comments
        self.components: dict[str, Schema] = {}

    def message(self, message: Descriptor) -> Schema:
        """A schema for a message type: inline for well-known types, else a ``$ref``."""
        name = message.full_name
        if name in WELL_KNOWN:
            return dict(WELL_KNOWN[name])
        if name in WRAPPED_TYPE:
            return {**SCALARS[WRAPPED_TYPE[name]], "nullable": True}
        if name not in self.components:
            if name == "google.protobuf.Any":
                self.components[name] = dict(_ANY)
            else:
                self.components[name] = {}  # reserve first: messages may be recursive
                self.components[name] = self.object(message)
        return _ref(name)

    def enum(self, enum: EnumDescriptor) -> Schema:
        """A ``$ref`` to a string-enum component."""
        name = enum.full_name
        if name not in self.components:
            lines = [self.comments.get(name, "")]
            for value in enum.values:
                note = self.comments.get(f"{name}.{value.name}", "").replace("\n", " ")
                lines.append(f" - {value.name}: {note}" if note else f" - {value.name}")
            self.components[name] = {
                "type": "string",
                "enum": [v.name for v in enum.values],
                "description": "\n".join(lines).strip("\n"),
            }
        return _ref(name)

    def object(self, message: Descriptor, *, exclude: Collection[str] = ()) -> Schema:
        """An object schema for a message, leaving out the fields named in ``exclude``."""
        properties: dict[str, Schema] = {}
        required: list[str] = []
        for field in message.fields:
            if field.name in exclude:
                continue
            properties[field.json_name] = self.field(field)
            if field_behavior_pb2.REQUIRED in behaviors(field):
                required.append(field.json_name)
        schema: Schema = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        description = self.comments.get(message.full_name)
        if description:
            schema["description"] = description
        return schema

    def field(self, field: FieldDescriptor) -> Schema:
        """A property schema: the field's value type, with its comment and readOnly."""
        notes: Schema = {}
        description = self.comments.get(field.full_name)
        if description:
            notes["description"] = description
        if field_behavior_pb2.OUTPUT_ONLY in behaviors(field):
            notes["readOnly"] = True
        return _with_notes(self.value(field), notes)

    def value(self, field: FieldDescriptor) -> Schema:
        """The schema of a field's JSON value, without notes."""
        if is_map(field):
            value_field = message_type_of(field).fields_by_name["value"]
            return {"type": "object", "additionalProperties": self.single(value_field)}
        if field.is_repeated:
            return {"type": "array", "items": self.single(field)}
        return self.single(field)

    def single(self, field: FieldDescriptor) -> Schema:
        """The schema of one element of a field (ignoring repetition)."""
        if field.type == _F.TYPE_MESSAGE:
            return self.message(message_type_of(field))
        if field.type == _F.TYPE_ENUM:
            return self.enum(enum_type_of(field))
        return dict(SCALARS[field.type])
