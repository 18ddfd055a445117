"""Request bytes no protobuf library would write: built by hand from the wire format."""

from __future__ import annotations


def length_delimited(field_number: int, payload: bytes) -> bytes:
    """One length-delimited record (wire type 2)."""
    out = bytearray([(field_number << 3) | 2])
    size = len(payload)
    while True:
        low, size = size & 0x7F, size >> 7
        out.append(low | (0x80 if size else 0))
        if not size:
            return bytes(out) + payload


def deep_extra_input(depth: int, prompt: bytes = b"a fox") -> bytes:
    """A GenerateMediaRequest whose extra_input holds ``{"a": [[[...["x"]...]]]}``, lists
    ``depth`` deep: two messages (Value, ListValue) per level, so protobuf's limit of 100 nested
    messages is passed at a depth of about 48."""
    value = length_delimited(3, b"x")  # Value.string_value
    for _ in range(depth):
        value = length_delimited(6, length_delimited(1, value))  # Value.list_value.values
    entry = length_delimited(1, b"a") + length_delimited(2, value)  # Struct.fields entry
    parameters = length_delimited(9, length_delimited(1, entry))  # GenerationParameters
    return length_delimited(1, prompt) + length_delimited(3, parameters)
