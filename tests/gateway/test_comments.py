"""Proto comments for the OpenAPI document: extraction, and the generated table is current."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from mediagen.gateway import comments
from mediagen.gateway.contract_comments import COMMENTS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (" One line.\n", "One line."),
        (" First.\n\n Second,\n   indented.\n", "First.\n\nSecond,\n  indented."),
        (" Public. (-- Internal note. --)\n", "Public."),
        (" Public.\n (-- api-linter: core::0131=disabled\n     reason --)\n", "Public."),
        ("", ""),
    ],
)
def test_clean_comment(raw, clean):
    assert comments.clean_comment(raw) == clean


def test_comments_from_a_descriptor_set(echo_protos):
    table = echo_protos.comments
    assert table["gwtest.v1.EchoService"] == "Echoes requests back, and streams counters."
    assert table["gwtest.v1.EchoService.GetItem"].startswith("Returns one item")
    assert table["gwtest.v1.EchoRequest.big"] == "A 64-bit number (a JSON string)."
    assert table["gwtest.v1.Color.COLOR_RED"] == "Red."
    assert table["gwtest.v1.Nested"] == "A nested message."


def test_nested_types_are_named_by_their_scope():
    file = descriptor_pb2.FileDescriptorProto(package="p")
    outer = file.message_type.add(name="Outer")
    outer.field.add(name="f")
    inner = outer.nested_type.add(name="Inner")
    inner.field.add(name="g")
    enum = outer.enum_type.add(name="E")
    enum.value.add(name="E_X")
    for path, text in [
        ([4, 0, 2, 0], " f."),
        ([4, 0, 3, 0], " Inner."),
        ([4, 0, 3, 0, 2, 0], " g."),
        ([4, 0, 4, 0, 2, 0], " x."),
    ]:
        file.source_code_info.location.add(path=path, leading_comments=text)
    assert comments.comments_from_file_set([file]) == {
        "p.Outer.f": "f.",
        "p.Outer.Inner": "Inner.",
        "p.Outer.Inner.g": "g.",
        "p.Outer.E.E_X": "x.",
    }


def test_contract_comments_are_current():
    if not (ROOT / "proto").is_dir():
        pytest.skip("needs the repository's proto/ folder")
    pytest.importorskip("grpc_tools")
    assert comments.contract_comments() == COMMENTS, (
        "mediagen/gateway/contract_comments.py is stale: run `python -m mediagen.gateway.comments`"
    )
    assert COMMENTS["mediagen.v1.Job.status"] == "Output only. Where the job is in its lifecycle."
    assert not any(key.startswith("google.protobuf.") for key in COMMENTS)
