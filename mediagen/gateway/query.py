"""Query-string binding: every request field that is neither in the path nor the body.

As in grpc-gateway (``runtime/query.go``):

- a parameter's name is a dotted field path, each element a proto name (``page_size``) or a JSON
  name (``pageSize``); a message field expands to one parameter per leaf (``parameters.width``);
- a repeated field takes every value (``?tag=a&tag=b``); a singular one given twice is an error;
- a map field is set with ``name[key]=value``;
- setting a second member of one oneof is an error;
- parameters naming no field are ignored, and so are fields already bound by the path or the
  body.

Conversions are in :mod:`mediagen.gateway.values`. Errors raise :class:`~.values.BadValue`.
No I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from functools import cache

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from mediagen.gateway.values import BadValue, descriptor_of, set_from_text, set_map_entry

_KEY = re.compile(r"^(?P<path>[^\[\]]+)(?:\[(?P<key>[^\[\]]*)\])?$")


@cache
def _fields_by_any_name(message: Descriptor) -> dict[str, FieldDescriptor]:
    by_name: dict[str, FieldDescriptor] = {f.json_name: f for f in message.fields}
    by_name.update(message.fields_by_name)
    return by_name


def resolve(message: Descriptor, dotted: str) -> list[FieldDescriptor] | None:
    """Fields along a dotted path of proto or JSON names; None if a name matches no field.

    Raises :class:`BadValue` if the path goes through a field that is not a message.
    """
    fields: list[FieldDescriptor] = []
    current: Descriptor | None = message
    for name in dotted.split("."):
        if current is None:
            raise BadValue(dotted, f"{fields[-1].name!r} is not a message field")
        field = _fields_by_any_name(current).get(name)
        if field is None:
            return None
        fields.append(field)
        current = field.message_type if field.type == FieldDescriptor.TYPE_MESSAGE else None
    return fields


def _excluded(fields: Sequence[FieldDescriptor], excluded: Collection[str]) -> bool:
    canonical = ".".join(f.name for f in fields)
    return any(canonical == e or canonical.startswith(e + ".") for e in excluded)


def bind_query(
    message: Message, params: Sequence[tuple[str, str]], *, excluded: Collection[str] = ()
) -> None:
    """Set fields of ``message`` from decoded query parameters ``(name, value)``.

    ``excluded`` holds proto-name field paths bound elsewhere (path variables, the body field);
    parameters at or under them are ignored.
    """
    grouped: dict[str, list[str]] = {}
    for name, value in params:
        grouped.setdefault(name, []).append(value)
    for name, values in grouped.items():
        match = _KEY.match(name)
        if match is None:
            continue
        path = match.group("path")
        fields = resolve(descriptor_of(message), path)
        if fields is None or _excluded(fields, excluded):
            continue
        canonical = ".".join(f.name for f in fields)
        map_key = match.group("key")
        if map_key is None:
            set_from_text(message, fields, values, canonical)
            continue
        if len(values) != 1:
            raise BadValue(f"{canonical}[{map_key}]", f"expected one value, got {len(values)}")
        set_map_entry(message, fields, map_key, values[0], canonical)
