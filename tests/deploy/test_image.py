"""The image: the Dockerfile lints clean, keeps its promises, and its build context installs.

No Docker engine runs here, so the build is checked in parts: hadolint reads the Dockerfile, and
the package is built into a wheel from exactly the files the build context would hold (the
repository less .dockerignore), which is what the image's `pip install .` does.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.deploy.support import ROLES, ROOT, run, tool

DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def test_hadolint_finds_nothing() -> None:
    run(tool("hadolint"), "--no-color", "--failure-threshold", "style", str(DOCKERFILE))


def test_multi_stage_non_root_one_entrypoint() -> None:
    steps = _instructions()
    stages = [args for word, args in steps if word == "FROM"]
    assert len(stages) >= 2, "the image is built in stages: build, then a clean runtime"
    final = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM") :]
    users = [args for word, args in final if word == "USER"]
    assert users, "the runtime stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"numeric non-root USER (runAsNonRoot), got {uid}"
    entrypoints = [json.loads(args) for word, args in steps if word == "ENTRYPOINT"]
    assert entrypoints[-1:] == [["mediagen"]]
    args = dict(a.split("=", 1) for w, a in steps if w == "ARG" and "=" in a)
    assert args.get("PYTHON_IMAGE", "").startswith("python:3.12"), (
        "Python 3.12: taskiq-redis hangs on shutdown on 3.11"
    )


def _ignored(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """.dockerignore semantics: the last pattern matching the path or a parent decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negated, pattern in patterns:
        if any(pattern.fullmatch(c) for c in candidates):
            excluded = not negated
    return excluded


def _dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    patterns = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        glob = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(glob):
            if glob.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif glob.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif glob[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif glob[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif glob[i] == "[":
                end = glob.index("]", i)
                regex, i = regex + glob[i : end + 1], end + 1
            else:
                regex, i = regex + re.escape(glob[i]), i + 1
        patterns.append((negated, re.compile(regex)))
    return patterns


def _build_context(dest: Path) -> list[str]:
    """Copy the repository's files that .dockerignore lets through (tracked or not) to dest."""
    patterns = _dockerignore_patterns()
    # An ignored folder is skipped whole unless a "!" pattern could bring something back.
    prune = not any(negated for negated, _ in patterns)
    kept = []
    for folder, dirs, files in os.walk(ROOT):
        base = Path(folder).relative_to(ROOT)
        if prune:
            dirs[:] = [d for d in dirs if not _ignored((base / d).as_posix(), patterns)]
        for name in files:
            rel = (base / name).as_posix()
            if not _ignored(rel, patterns):
                kept.append(rel)
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / rel, dest / rel)
    return kept


def test_dockerignore_keeps_secrets_and_state_out() -> None:
    patterns = _dockerignore_patterns()
    for rel in [
        ".git/config",
        ".venv/bin/python",
        ".env",
        "tests/conftest.py",
        "mediagen/__pycache__/config.cpython-312.pyc",
        ".mediagen/mediagen.db",
    ]:
        assert _ignored(rel, patterns), f"{rel} must stay out of the build context"
    for rel in [
        "pyproject.toml",
        "setup.py",
        "README.md",
        "mediagen/config.py",
        "gen/mediagen/v1/__init__.py",
        "migrations/env.py",
    ]:
        assert not _ignored(rel, patterns), f"{rel} is needed to build the image"


def _setuptools_is_recent() -> bool:
    try:
        major = int(importlib.metadata.version("setuptools").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        return False
    return major >= 70  # pyproject's build-system floor


def _build_wheel(tmp_path: Path) -> Path:
    context = tmp_path / "context"
    _build_context(context)
    isolation = [] if not _setuptools_is_recent() else ["--no-build-isolation"]
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--no-deps",
        "--disable-pip-version-check",
        *isolation,
        "--wheel-dir",
        str(tmp_path / "wheel"),
        str(context),
    )
    (wheel,) = (tmp_path / "wheel").glob("mediagen-*.whl")
    return wheel


def test_the_wheel_imports_its_contract_and_migrates(tmp_path: Path) -> None:
    """From the wheel alone (not the checkout): mediagen.v1 sits inside mediagen, and the
    packaged migrations build a database."""
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(_build_wheel(tmp_path)) as zf:
        zf.extractall(unpacked)
    script = (
        # The checkout's editable install hooks the import system; take it out so that only
        # the unpacked wheel can provide mediagen.
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]\n"
        "import asyncio, mediagen, mediagen.v1.media_generation_service_pb2 as pb\n"
        "from mediagen.jobs.migrate import upgrade\n"
        f"assert mediagen.__file__.startswith({str(unpacked)!r}), mediagen.__file__\n"
        "assert pb.DESCRIPTOR.services_by_name['MediaGenerationService']\n"
        f"asyncio.run(upgrade('sqlite+aiosqlite:///{tmp_path}/wheel.db'))\n"
    )
    run(sys.executable, "-c", script, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(unpacked)})
    assert (tmp_path / "wheel.db").stat().st_size > 0


def test_build_context_installs_the_whole_package(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        in_wheel = set(zf.namelist())

    # Every Python file of the packages setup.py installs (mediagen, gen -> mediagen.v1,
    # migrations -> mediagen.migrations) must come through the build context.
    layout = {
        "mediagen": "mediagen",
        "gen/mediagen/v1": "mediagen/v1",
        "migrations": "mediagen/migrations",
    }
    missing = []
    for src, dest in layout.items():
        for path in (ROOT / src).rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            name = f"{dest}/{path.relative_to(ROOT / src).as_posix()}"
            if name not in in_wheel:
                missing.append(name)
    assert not missing, f"the image would lack: {missing}"

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module = scripts["mediagen"].split(":")[0]
    path = module.replace(".", "/")
    assert f"{path}.py" in in_wheel or f"{path}/__init__.py" in in_wheel, (
        f"the ENTRYPOINT `mediagen` runs {scripts['mediagen']}, which the wheel lacks"
    )


def test_cli_runs_every_role_the_deploy_files_use() -> None:
    """`mediagen ROLE --help` works for each role of the compose file and the manifests."""
    mediagen = Path(sys.executable).parent / "mediagen"
    if not mediagen.exists():
        pytest.skip("the mediagen console script is not installed (pip install -e .)")
    for role in ROLES:
        out = run(str(mediagen), role, "--help")
        if role == "gateway":
            assert "--grpc-target" in out
