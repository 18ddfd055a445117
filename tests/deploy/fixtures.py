"""Fixtures for the deploy checks: the resolved compose file and the rendered manifests.

Loaded by conftest.py, or with `-p tests.deploy.fixtures` when `.ci/check-deploy` runs pytest
with --noconftest (so the deploy checks do not depend on the rest of the suite's fixtures).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.support import K8S_DIR, ROOT, run, tool


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    """`docker-compose config` as JSON: validated, interpolated with the file's own defaults.

    The caller's environment and any .env file are kept out, so the defaults are what is checked.
    """
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    out = run(
        tool("docker-compose"),
        "--env-file",
        os.devnull,
        "--file",
        str(ROOT / "docker-compose.yml"),
        "config",
        "--format",
        "json",
        env=env,
    )
    config: dict[str, Any] = json.loads(out)
    return config


@pytest.fixture(scope="session")
def k8s_rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`kubectl kustomize deploy/k8s`, written to a file."""
    out = run(tool("kubectl"), "kustomize", str(K8S_DIR))
    path = tmp_path_factory.mktemp("k8s") / "rendered.yaml"
    path.write_text(out)
    return path


@pytest.fixture(scope="session")
def k8s_objects(k8s_rendered: Path) -> list[dict[str, Any]]:
    yaml = pytest.importorskip(
        "yaml", reason="PyYAML is not installed (kubernetes-validate brings it)"
    )
    return [doc for doc in yaml.safe_load_all(k8s_rendered.read_text()) if doc]
