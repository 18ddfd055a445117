"""Which field of a request message failed to decode. Pure: no I/O.

protobuf's parser says only *that* bytes are not a valid message ("String field had bad
UTF-8", "Exceeded ... MaxDepth"). To tell a caller which field to fix, :func:`blame` walks the
wire format record by record and decodes each string and message field on its own; the first
one that fails is the culprit. It runs only after a failed parse, so its cost does not matter.
"""

from __future__ import annotations

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class _Broken(Exception):
    """The bytes are not even a sequence of well-framed records."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data) and shift < 70:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise _Broken


def _records(data: bytes) -> list[tuple[int, int, bytes]]:
    """(field number, wire type, payload) of each record; payload is empty unless LEN."""
    records = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            _, pos = _varint(data, pos)
            payload = b""
        elif wire_type in (_I64, _I32):
            pos += 8 if wire_type == _I64 else 4
            payload = b""
        elif wire_type == _LEN:
            size, pos = _varint(data, pos)
            payload = data[pos : pos + size]
            pos += size
        else:  # groups (deprecated) or garbage
            raise _Broken
        if pos > len(data) or number == 0:
            raise _Broken
        records.append((number, wire_type, payload))
    return records


def _stop_at(field: FieldDescriptor) -> bool:
    """Fields reported as a whole: well-known types (a Struct is one value to the caller) and
    maps (the entry is not a field the caller wrote)."""
    message_type = field.message_type
    if message_type is None:
        return True
    return message_type.full_name.startswith("google.") or message_type.GetOptions().map_entry


def blame(descriptor: Descriptor, data: bytes, prefix: str = "") -> str | None:
    """The dotted proto path of the first field of ``data`` that does not decode, or None if
    no single field can be named (the bytes are not framed as records at all)."""
    try:
        records = _records(data)
    except _Broken:
        return None
    for number, wire_type, payload in records:
        field = descriptor.fields_by_number.get(number)
        if field is None or wire_type != _LEN:
            continue  # unknown fields are kept as they are; scalars cannot hold bad text
        path = f"{prefix}{field.name}"
        if field.type == FieldDescriptor.TYPE_STRING:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                return path
        elif field.message_type is not None:
            try:
                message_factory.GetMessageClass(field.message_type).FromString(payload)
            except DecodeError:
                if _stop_at(field):
                    return path
                return blame(field.message_type, payload, path + ".") or path
    return None
