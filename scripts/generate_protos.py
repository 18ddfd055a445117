"""Regenerate `gen/` from `proto/`: ``python scripts/generate_protos.py``.

Writes the message modules (`*_pb2.py`), their typed stubs (`*_pb2.pyi`, mypy-protobuf) and the
gRPC modules (`*_pb2_grpc.py` with async-typed `*_pb2_grpc.pyi`) for the mediagen protos only;
the google/* protos they import are provided at run time by googleapis-common-protos.
``--check`` regenerates into a temporary folder and fails if `gen/` differs.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
THIRD_PARTY = ROOT / "third_party" / "googleapis"
GEN_DIR = ROOT / "gen"
PACKAGE = Path("mediagen") / "v1"


def generate(out: Path) -> None:
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in (PROTO_DIR / PACKAGE).glob("*.proto"))
    out.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{THIRD_PARTY}",
        f"--python_out={out}",
        f"--mypy_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_grpc_out=only_async:{out}",
        *protos,
    ]
    subprocess.run(cmd, check=True, cwd=PROTO_DIR, env=env)
    (out / PACKAGE / "__init__.py").write_text(
        '"""Generated from proto/mediagen/v1 by scripts/generate_protos.py; do not edit."""\n'
    )


def differences(a: Path, b: Path) -> list[str]:
    found: list[str] = []
    files_a = {
        p.relative_to(a) for p in a.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }
    files_b = {
        p.relative_to(b) for p in b.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }
    for rel in sorted(files_a ^ files_b):
        found.append(f"only in one tree: {rel}")
    for rel in sorted(files_a & files_b):
        if not filecmp.cmp(a / rel, b / rel, shallow=False):
            found.append(f"differs: {rel}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if gen/ is out of date")
    args = parser.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp))
            diff = differences(Path(tmp), GEN_DIR)
        for line in diff:
            print(line, file=sys.stderr)
        if diff:
            print("gen/ is stale: run `python scripts/generate_protos.py`", file=sys.stderr)
        return 1 if diff else 0
    shutil.rmtree(GEN_DIR, ignore_errors=True)
    generate(GEN_DIR)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
