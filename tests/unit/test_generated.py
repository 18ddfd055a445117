"""The generated code and the vendored protos never drift from their sources."""

import subprocess
import sys
from pathlib import Path

import google.api
import google.rpc

ROOT = Path(__file__).resolve().parents[2]


def test_gen_matches_proto() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/generate_protos.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_vendored_googleapis_protos_match_the_installed_package() -> None:
    vendored = ROOT / "third_party" / "googleapis" / "google"
    installed = {
        "api": Path(google.api.__path__[0]),
        "rpc": Path(google.rpc.__path__[0]),
    }
    files = sorted(vendored.rglob("*.proto"))
    assert files
    for path in files:
        package = path.relative_to(vendored).parts[0]
        assert path.read_bytes() == (installed[package] / path.name).read_bytes(), path
