"""Proto comments, keyed by element name, for the OpenAPI document's descriptions.

The ``_pb2`` modules grpc_tools writes carry no ``source_code_info``, so the comments are not
in the runtime descriptors. They are taken from a descriptor set compiled with
``--include_source_info`` instead, and for the mediagen contract that happens at generation
time: ``python -m mediagen.gateway.comments`` writes :mod:`mediagen.gateway.contract_comments`,
a plain Python module that ships in the wheel like any other (``--check`` fails if it is stale,
and a test runs that check). Other services can pass their own table, for example
``comments_from_file_set`` of a descriptor set built with ``--include_source_info``.

Keys are full names: ``pkg.Message``, ``pkg.Message.field``, ``pkg.Enum``,
``pkg.Enum.VALUE`` (scoped by the enum, unlike protobuf's own value names), ``pkg.Service``,
``pkg.Service.Method``. Text is the leading comment (the trailing one if there is none), with
the comment markers' leading space removed and ``(-- internal --)`` remarks dropped.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, ServiceDescriptor

_INTERNAL = re.compile(r"\(--.*?--\)", re.DOTALL)

# Field numbers inside descriptor.proto that source locations use.
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MESSAGE_FIELD, _MESSAGE_NESTED, _MESSAGE_ENUM = 2, 3, 4
_ENUM_VALUE = 2
_SERVICE_METHOD = 2

Path_ = tuple[int, ...]


def clean_comment(text: str) -> str:
    """Comment text without the space after ``//``, internal remarks, or surrounding blanks."""
    text = _INTERNAL.sub("", text)
    lines = [line[1:] if line.startswith(" ") else line for line in text.split("\n")]
    return "\n".join(line.rstrip() for line in lines).strip()


def _enum_names(
    enum: descriptor_pb2.EnumDescriptorProto, path: Path_, scope: str
) -> Iterator[tuple[Path_, str]]:
    name = f"{scope}.{enum.name}"
    yield path, name
    for i, value in enumerate(enum.value):
        yield (*path, _ENUM_VALUE, i), f"{name}.{value.name}"


def _message_names(
    message: descriptor_pb2.DescriptorProto, path: Path_, scope: str
) -> Iterator[tuple[Path_, str]]:
    name = f"{scope}.{message.name}"
    yield path, name
    for i, field in enumerate(message.field):
        yield (*path, _MESSAGE_FIELD, i), f"{name}.{field.name}"
    for i, nested in enumerate(message.nested_type):
        yield from _message_names(nested, (*path, _MESSAGE_NESTED, i), name)
    for i, enum in enumerate(message.enum_type):
        yield from _enum_names(enum, (*path, _MESSAGE_ENUM, i), name)


def _file_names(file: descriptor_pb2.FileDescriptorProto) -> Iterator[tuple[Path_, str]]:
    scope = file.package
    for i, message in enumerate(file.message_type):
        yield from _message_names(message, (_FILE_MESSAGE, i), scope)
    for i, enum in enumerate(file.enum_type):
        yield from _enum_names(enum, (_FILE_ENUM, i), scope)
    for i, service in enumerate(file.service):
        name = f"{scope}.{service.name}"
        yield (_FILE_SERVICE, i), name
        for j, method in enumerate(service.method):
            yield (_FILE_SERVICE, i, _SERVICE_METHOD, j), f"{name}.{method.name}"


def comments_from_file_set(files: Iterable[descriptor_pb2.FileDescriptorProto]) -> dict[str, str]:
    """Every element's comment in files that carry ``source_code_info``."""
    comments: dict[str, str] = {}
    for file in files:
        names = dict(_file_names(file))
        for location in file.source_code_info.location:
            name = names.get(tuple(location.path))
            if name is None:
                continue
            text = clean_comment(location.leading_comments or location.trailing_comments)
            if text:
                comments[name] = text
    return comments


def reachable_names(services: Iterable[ServiceDescriptor]) -> set[str]:
    """Full names of the services and of every message and enum their methods can reach."""
    seen: set[str] = set()
    pending: list[Descriptor | EnumDescriptor] = []
    for service in services:
        seen.add(service.full_name)
        for method in service.methods:
            pending += [method.input_type, method.output_type]
    while pending:
        item = pending.pop()
        if item.full_name in seen:
            continue
        seen.add(item.full_name)
        if isinstance(item, Descriptor):
            for field in item.fields:
                if field.message_type is not None:
                    pending.append(field.message_type)
                elif field.enum_type is not None:
                    pending.append(field.enum_type)
    return seen


def restrict(comments: Mapping[str, str], names: set[str]) -> dict[str, str]:
    """The comments of ``names`` and of their members (fields, values, methods), less those of
    the well-known types, which the OpenAPI document describes by their JSON form."""
    return {
        key: text
        for key, text in comments.items()
        if (key in names or key.rpartition(".")[0] in names)
        and not key.startswith("google.protobuf.")
    }


# --- generation of contract_comments.py (development only: needs grpcio-tools) -------------

_ROOT = Path(__file__).resolve().parents[2]
_TARGET = Path(__file__).with_name("contract_comments.py")
_HEADER = '''"""Comments of the mediagen.v1 contract, for the OpenAPI document (see comments.py).

Generated from proto/ by ``python -m mediagen.gateway.comments``; do not edit.
"""

# ruff: noqa: E501

'''


def compile_with_source_info(
    proto_root: Path, includes: Iterable[Path], protos: Iterable[str]
) -> list[descriptor_pb2.FileDescriptorProto]:
    """Run grpc_tools' protoc and return the files of the descriptor set, with comments."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.binpb"
        cmd = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{proto_root}",
            *(f"-I{p}" for p in includes),
            "--include_imports",
            "--include_source_info",
            f"--descriptor_set_out={out}",
            *protos,
        ]
        subprocess.run(cmd, check=True, cwd=proto_root)
        file_set = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    return list(file_set.file)


def contract_comments() -> dict[str, str]:
    """The comments of the mediagen.v1 services and what they reach, from proto/."""
    from mediagen.v1 import media_generation_service_pb2 as service_pb2

    proto_root = _ROOT / "proto"
    package_dir = proto_root / "mediagen" / "v1"
    protos = sorted(str(p.relative_to(proto_root)) for p in package_dir.glob("*.proto"))
    files = compile_with_source_info(proto_root, [_ROOT / "third_party" / "googleapis"], protos)
    services = service_pb2.DESCRIPTOR.services_by_name.values()
    return restrict(comments_from_file_set(files), reachable_names(services))


def render_module(comments: Mapping[str, str]) -> str:
    """Source of contract_comments.py."""
    import json

    lines = [_HEADER + "COMMENTS: dict[str, str] = {"]
    for key in sorted(comments):
        lines.append(f"    {json.dumps(key)}: {json.dumps(comments[key], ensure_ascii=False)},")
    lines.append("}\n")
    return "\n".join(lines)


def _load(path: Path) -> dict[str, str]:
    spec = importlib.util.spec_from_file_location("_contract_comments", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table: dict[str, str] = module.COMMENTS
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate mediagen/gateway/contract_comments.py")
    parser.add_argument("--check", action="store_true", help="fail if the module is stale")
    args = parser.parse_args(argv)
    comments = contract_comments()
    if args.check:
        stale = not _TARGET.exists() or _load(_TARGET) != comments
        if stale:
            print(f"{_TARGET} is stale: run `python -m mediagen.gateway.comments`", file=sys.stderr)
        return 1 if stale else 0
    _TARGET.write_text(render_module(comments), encoding="utf-8")
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if Path(ruff).exists():
        subprocess.run([ruff, "format", "--quiet", str(_TARGET)], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
