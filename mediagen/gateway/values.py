"""Setting request fields from text: path variables and query parameters.

The conversions follow grpc-gateway (``runtime/convert.go``, ``runtime/query.go``):

- integers in decimal, range-checked for the field's type; floats as Go's ``ParseFloat`` reads
  them (``1.5``, ``1e3``, ``NaN``, ``Inf``); booleans as Go's ``ParseBool`` (``true``, ``1``,
  ``t``, ``FALSE`` ...);
- enums by value name (case-sensitive) or by number;
- bytes (and ``BytesValue``) as standard base64, URL-safe base64 as a fallback;
- ``Timestamp`` as RFC 3339; ``Duration`` as Go's ``time.ParseDuration`` (``1.5s``, ``90m``,
  ``1h30m``); ``FieldMask`` as comma-separated paths; wrappers as their raw scalar; ``Struct``,
  ``Value`` and ``ListValue`` as JSON text. Any other message type is refused.

Every problem raises :class:`BadValue`, which the gateway answers with 400 INVALID_ARGUMENT.
No I/O here.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import cast

from google.protobuf import descriptor_pb2, json_format
from google.protobuf.descriptor import (
    Descriptor,
    EnumDescriptor,
    FieldDescriptor,
    OneofDescriptor,
)
from google.protobuf.message import Message

from mediagen.errors import bounded

_F = FieldDescriptor

_INT_RANGES: dict[int, tuple[int, int]] = {
    **dict.fromkeys((_F.TYPE_INT32, _F.TYPE_SINT32, _F.TYPE_SFIXED32), (-(2**31), 2**31 - 1)),
    **dict.fromkeys((_F.TYPE_INT64, _F.TYPE_SINT64, _F.TYPE_SFIXED64), (-(2**63), 2**63 - 1)),
    **dict.fromkeys((_F.TYPE_UINT32, _F.TYPE_FIXED32), (0, 2**32 - 1)),
    **dict.fromkeys((_F.TYPE_UINT64, _F.TYPE_FIXED64), (0, 2**64 - 1)),
}
_INT_TEXT = re.compile(r"^[+-]?[0-9]+$")
_FLOAT_TEXT = re.compile(
    r"^[+-]?(([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|inf|infinity|nan)$", re.IGNORECASE
)
_FLOAT32_MAX = 3.4028234663852886e38
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})

_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNIT_NS = {
    "ns": 1,
    "us": 10**3,
    "µs": 10**3,
    "μs": 10**3,
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
_MAX_DURATION_S = 315_576_000_000  # google.protobuf.Duration's documented range

WRAPPERS = frozenset(
    f"google.protobuf.{name}Value"
    for name in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
)
JSON_TEXT_TYPES = frozenset(
    {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}
)
TEXT_MESSAGE_TYPES = frozenset(
    {
        "google.protobuf.Timestamp",
        "google.protobuf.Duration",
        "google.protobuf.FieldMask",
        *WRAPPERS,
        *JSON_TEXT_TYPES,
    }
)


def descriptor_of(message: Message) -> Descriptor:
    """A message's descriptor (typed: the stubs allow the upb class too)."""
    return cast(Descriptor, message.DESCRIPTOR)


def message_type_of(field: FieldDescriptor) -> Descriptor:
    """The message type of a message field; ValueError for any other field."""
    message_type = field.message_type
    if message_type is None:
        raise ValueError(f"{field.full_name} is not a message field")
    return message_type


def enum_type_of(field: FieldDescriptor) -> EnumDescriptor:
    """The enum type of an enum field; ValueError for any other field."""
    enum_type = field.enum_type
    if enum_type is None:
        raise ValueError(f"{field.full_name} is not an enum field")
    return enum_type


class BadValue(ValueError):
    """A text value cannot be stored in its field; ``field`` is the dotted proto-name path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.description = message


def settable_from_text(field: FieldDescriptor) -> bool:
    """Whether a (leaf) field can be set from text: scalars, enums and the message types above."""
    if field.type != _F.TYPE_MESSAGE:
        return True
    return message_type_of(field).full_name in TEXT_MESSAGE_TYPES


def is_map(field: FieldDescriptor) -> bool:
    """Whether ``field`` is a map field."""
    message_type = field.message_type
    return (
        field.is_repeated and message_type is not None and bool(message_type.GetOptions().map_entry)
    )


def scalar_from_text(field: FieldDescriptor, text: str, path: str) -> object:
    """The Python value for a non-message field (enums give their number)."""
    converter = _SCALAR.get(field.type)
    if converter is None:  # pragma: no cover - every scalar type has a converter
        raise BadValue(path, f"unsupported field type {field.type}")
    return converter(field, text, path)


def _int(field: FieldDescriptor, text: str, path: str) -> object:
    if not _INT_TEXT.match(text):
        raise BadValue(path, f"invalid integer {bounded(text, 40)!r}")
    if len(text) > 40:  # past any 64-bit value; int() refuses over 4300 digits anyway
        raise BadValue(path, f"integer {bounded(text, 40)!r} out of range")
    value = int(text)
    low, high = _INT_RANGES[field.type]
    if not low <= value <= high:
        raise BadValue(path, f"integer {text!r} out of range")
    return value


def _float(field: FieldDescriptor, text: str, path: str) -> object:
    if not _FLOAT_TEXT.match(text):
        raise BadValue(path, f"invalid number {text!r}")
    value = float(text)
    if field.type == _F.TYPE_FLOAT and math.isfinite(value) and abs(value) > _FLOAT32_MAX:
        raise BadValue(path, f"number {text!r} out of range for float")
    return value


def _bool(field: FieldDescriptor, text: str, path: str) -> object:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise BadValue(path, f"invalid boolean {text!r}")


def _string(field: FieldDescriptor, text: str, path: str) -> object:
    return text


def _bytes(field: FieldDescriptor, text: str, path: str) -> object:
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded, validate=True)
    except binascii.Error:
        pass
    try:
        return base64.b64decode(padded, altchars=b"-_", validate=True)
    except binascii.Error as exc:
        raise BadValue(path, "invalid base64") from exc


def _enum(field: FieldDescriptor, text: str, path: str) -> object:
    enum = enum_type_of(field)
    by_name = enum.values_by_name.get(text)
    if by_name is not None:
        return by_name.number
    if _INT_TEXT.match(text) and int(text) in enum.values_by_number:
        return int(text)
    raise BadValue(path, f"invalid value {text!r} for enum {enum.full_name}")


_SCALAR: dict[int, Callable[[FieldDescriptor, str, str], object]] = {
    **dict.fromkeys(_INT_RANGES, _int),
    _F.TYPE_DOUBLE: _float,
    _F.TYPE_FLOAT: _float,
    _F.TYPE_BOOL: _bool,
    _F.TYPE_STRING: _string,
    _F.TYPE_BYTES: _bytes,
    _F.TYPE_ENUM: _enum,
}


def parse_go_duration(text: str, path: str = "") -> tuple[int, int]:
    """(seconds, nanos) of a Go ``time.ParseDuration`` string, e.g. ``1h30m`` or ``-1.5s``."""
    body = text
    sign = 1
    if body and body[0] in "+-":
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    if body == "0":
        return 0, 0
    total = Decimal(0)
    position = 0
    for match in _DURATION_PART.finditer(body):
        number = match.group(1)
        if match.start() != position or number in ("", "."):
            raise BadValue(path, f"invalid duration {text!r}")
        try:
            total += Decimal(number) * _DURATION_UNIT_NS[match.group(2)]
        except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
            raise BadValue(path, f"invalid duration {text!r}") from exc
        position = match.end()
    if position != len(body) or position == 0:
        raise BadValue(path, f"invalid duration {text!r}")
    nanos_total = int(total) * sign
    seconds, nanos = divmod(abs(nanos_total), 10**9)
    if seconds > _MAX_DURATION_S:
        raise BadValue(path, f"duration {text!r} out of range")
    return (seconds, nanos) if nanos_total >= 0 else (-seconds, -nanos)


def message_from_text(message: Message, text: str, path: str) -> None:
    """Fill a well-known-type message (see :data:`TEXT_MESSAGE_TYPES`) from text."""
    name = descriptor_of(message).full_name
    try:
        if name == "google.protobuf.Timestamp":
            message.FromJsonString(text)  # type: ignore[attr-defined]
        elif name == "google.protobuf.Duration":
            seconds, nanos = parse_go_duration(text, path)
            message.seconds = seconds  # type: ignore[attr-defined]
            message.nanos = nanos  # type: ignore[attr-defined]
        elif name == "google.protobuf.FieldMask":
            message.paths.extend(p for p in text.split(",") if p)  # type: ignore[attr-defined]
        elif name in WRAPPERS:
            inner = descriptor_of(message).fields_by_name["value"]
            message.value = scalar_from_text(inner, text, path)  # type: ignore[attr-defined]
        elif name in JSON_TEXT_TYPES:
            json_format.Parse(text, message)
        else:
            raise BadValue(path, f"a {name} cannot be set from text")
    except BadValue:
        raise
    except (ValueError, TypeError, json_format.ParseError, RecursionError) as exc:
        raise BadValue(path, f"invalid {name} {text!r}") from exc


@cache
def _synthetic_oneofs(message: Descriptor) -> frozenset[str]:
    """Names of the synthetic oneofs (those of proto3 ``optional`` fields) of a message."""
    proto = descriptor_pb2.DescriptorProto()
    message.CopyToProto(proto)
    return frozenset(
        proto.oneof_decl[f.oneof_index].name
        for f in proto.field
        if f.proto3_optional and f.HasField("oneof_index")
    )


def _check_oneof(parent: Message, field: FieldDescriptor, path: str) -> None:
    oneof: OneofDescriptor | None = field.containing_oneof
    if oneof is None or oneof.name in _synthetic_oneofs(field.containing_type):
        return
    current = parent.WhichOneof(oneof.name)
    if current is not None and current != field.name:
        raise BadValue(path, f"another field of oneof {oneof.name!r} ({current}) is already set")


def descend(message: Message, fields: Sequence[FieldDescriptor], path: str) -> Message:
    """The sub-message that holds the last of ``fields``, creating parents on the way."""
    parent = message
    for field in fields[:-1]:
        if field.type != _F.TYPE_MESSAGE or field.is_repeated:
            raise BadValue(path, f"{field.name!r} is not a singular message field")
        _check_oneof(parent, field, path)
        parent = getattr(parent, field.name)
    return parent


def set_from_text(
    message: Message, fields: Sequence[FieldDescriptor], values: Sequence[str], path: str
) -> None:
    """Set the field at the end of ``fields`` from one text value (or several, if repeated)."""
    parent = descend(message, fields, path)
    leaf = fields[-1]
    if is_map(leaf):
        raise BadValue(path, "a map field is set with name[key]=value")
    if not settable_from_text(leaf):
        raise BadValue(path, f"a {message_type_of(leaf).full_name} cannot be set from text")
    _check_oneof(parent, leaf, path)
    if leaf.is_repeated:
        container = getattr(parent, leaf.name)
        for text in values:
            if leaf.type == _F.TYPE_MESSAGE:
                message_from_text(container.add(), text, path)
            else:
                container.append(scalar_from_text(leaf, text, path))
        return
    if len(values) != 1:
        raise BadValue(path, f"expected one value, got {len(values)}")
    if leaf.type == _F.TYPE_MESSAGE:
        target = getattr(parent, leaf.name)
        target.Clear()
        message_from_text(target, values[0], path)
        target.SetInParent()
    else:
        setattr(parent, leaf.name, scalar_from_text(leaf, values[0], path))


def set_map_entry(
    message: Message, fields: Sequence[FieldDescriptor], key: str, value: str, path: str
) -> None:
    """Set ``map[key] = value`` for the map field at the end of ``fields``."""
    parent = descend(message, fields, path)
    leaf = fields[-1]
    if not is_map(leaf):
        raise BadValue(path, "not a map field")
    entry = message_type_of(leaf)
    key_field = entry.fields_by_name["key"]
    value_field = entry.fields_by_name["value"]
    typed_key = scalar_from_text(key_field, key, path)
    container = getattr(parent, leaf.name)
    if value_field.type == _F.TYPE_MESSAGE:
        if not settable_from_text(value_field):
            raise BadValue(path, "map values of this type cannot be set from text")
        message_from_text(container[typed_key], value, path)
    else:
        container[typed_key] = scalar_from_text(value_field, value, path)
