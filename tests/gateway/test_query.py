"""Query-string binding and text conversions: pure, table-driven, on the test proto."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from google.protobuf import json_format

from mediagen.gateway.query import bind_query
from mediagen.gateway.values import BadValue, parse_go_duration


def bound(echo_protos: Any, params: list[tuple[str, str]], excluded: Sequence[str] = ()) -> Any:
    request = echo_protos.pb2.EchoRequest()
    bind_query(request, params, excluded=excluded)
    return json_format.MessageToDict(request)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ([("number", "42")], {"number": 42}),
        ([("number", "-7")], {"number": -7}),
        ([("big", "9223372036854775807")], {"big": "9223372036854775807"}),
        ([("small", "4294967295")], {"small": 4294967295}),
        ([("ratio", "1.5")], {"ratio": 1.5}),
        ([("ratio", "1e3")], {"ratio": 1000.0}),
        ([("ratio", "NaN")], {"ratio": "NaN"}),
        ([("enabled", "true")], {"enabled": True}),
        ([("enabled", "1")], {"enabled": True}),
        ([("enabled", "F")], {}),
        ([("blob", "aGk=")], {"blob": "aGk="}),
        ([("blob", "aGk")], {"blob": "aGk="}),  # padding optional
        ([("blob", "-_8")], {"blob": "+/8="}),  # URL-safe fallback
        ([("color", "COLOR_BLUE")], {"color": "COLOR_BLUE"}),
        ([("color", "1")], {"color": "COLOR_RED"}),
        ([("colors", "COLOR_RED"), ("colors", "2")], {"colors": ["COLOR_RED", "COLOR_BLUE"]}),
        ([("tags", "a"), ("tags", "b"), ("tags", "")], {"tags": ["a", "b", ""]}),
        ([("nested.label", "x"), ("nested.count", "3")], {"nested": {"label": "x", "count": 3}}),
        ([("nested.deeper.flag", "true")], {"nested": {"deeper": {"flag": True}}}),
        ([("when", "2026-01-02T03:04:05.5Z")], {"when": "2026-01-02T03:04:05.500Z"}),
        ([("when", "2026-01-02T03:04:05+01:00")], {"when": "2026-01-02T02:04:05Z"}),
        ([("wait", "1.5s")], {"wait": "1.500s"}),
        ([("wait", "1h30m")], {"wait": "5400s"}),
        ([("wait", "-90ms")], {"wait": "-0.090s"}),
        ([("data", '{"a": [1, "x"], "b": null}')], {"data": {"a": [1, "x"], "b": None}}),
        ([("maybe", "5")], {"maybe": "5"}),
        ([("maybe", "0")], {"maybe": "0"}),  # a wrapper keeps presence
        ([("mask", "a.b,c")], {"mask": "a.b,c"}),
        ([("labels[k1]", "v1"), ("labels[k2]", "")], {"labels": {"k1": "v1", "k2": ""}}),
        ([("first", "x")], {"first": "x"}),
        ([("maybe_count", "0")], {"maybeCount": 0}),
        # JSON names work as well as proto names.
        (
            [("maybeCount", "3"), ("nested.deeper.flag", "1")],
            {"maybeCount": 3, "nested": {"deeper": {"flag": True}}},
        ),
        # Unknown parameters are ignored.
        ([("nope", "1"), ("nested.nope", "2"), ("number", "1")], {"number": 1}),
        ([("bad[key", "1")], {}),
    ],
)
def test_bind_query(echo_protos, params, expected):
    assert bound(echo_protos, params) == expected


def test_excluded_fields_are_ignored(echo_protos):
    params = [("id", "from-query"), ("note.text", "t"), ("number", "1")]
    assert bound(echo_protos, params, excluded=["id", "note"]) == {"number": 1}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ([("number", "x")], "number"),
        ([("number", "1.5")], "number"),
        ([("number", "2147483648")], "number"),
        ([("number", "1_000")], "number"),
        ([("small", "-1")], "small"),
        ([("big", "9223372036854775808")], "big"),
        ([("ratio", "1_0")], "ratio"),
        ([("ratio", "abc")], "ratio"),
        ([("enabled", "yes")], "enabled"),
        ([("blob", "***")], "blob"),
        ([("color", "COLOR_GREEN")], "color"),
        ([("color", "color_red")], "color"),  # names are case-sensitive
        ([("color", "7")], "color"),
        ([("when", "yesterday")], "when"),
        ([("wait", "5")], "wait"),
        ([("wait", "1x")], "wait"),
        ([("wait", "s")], "wait"),
        ([("data", "{not json")], "data"),
        ([("maybe", "x")], "maybe"),
        ([("number", "1"), ("number", "2")], "number"),  # a singular field twice
        ([("first", "x"), ("second", "2")], "second"),  # two members of one oneof
        ([("nested", "x")], "nested"),  # a plain message cannot be set from text
        ([("many.label", "x")], "many.label"),  # repeated messages are not query parameters
        ([("labels", "x")], "labels"),  # a map needs name[key]
        ([("id.x", "1")], "id.x"),  # a path through a scalar
    ],
)
def test_bind_query_rejects(echo_protos, params, field):
    with pytest.raises(BadValue) as info:
        bound(echo_protos, params)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", (0, 0)),
        ("1s", (1, 0)),
        ("1.5s", (1, 500_000_000)),
        ("-1.5s", (-1, -500_000_000)),
        ("+2m", (120, 0)),
        ("1h30m", (5400, 0)),
        ("1.5h", (5400, 0)),
        ("300ms", (0, 300_000_000)),
        ("2us", (0, 2000)),
        ("2µs", (0, 2000)),
        ("7ns", (0, 7)),
        ("1m0.5s", (60, 500_000_000)),
        (".5s", (0, 500_000_000)),
    ],
)
def test_go_duration(text, expected):
    assert parse_go_duration(text) == expected


@pytest.mark.parametrize("text", ["", "1", "s", "1.s.", "1d", "1h 30m", "--1s", "99999999999999h"])
def test_go_duration_rejects(text):
    with pytest.raises(BadValue):
        parse_go_duration(text)
