"""The README's configuration table lists every environment variable the code reads."""

from __future__ import annotations

import re
from pathlib import Path

from mediagen.config import Settings

ROOT = Path(__file__).resolve().parents[2]
#: Read by the CLI's client commands, not by Settings.
CLI_ONLY = {"MEDIAGEN_TARGET", "MEDIAGEN_API_KEY"}


class RecordingEnv(dict[str, str]):
    """An empty environment that remembers every name looked up in it."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        self.names.add(key)
        return default

    def __getitem__(self, key: str) -> str:
        self.names.add(key)
        raise KeyError(key)


def documented() -> set[str]:
    table = (ROOT / "README.md").read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    first_cells = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    return {name for cell in first_cells for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)}


def test_every_setting_is_in_the_readme_table() -> None:
    env = RecordingEnv()
    Settings.from_env(env)
    read = env.names | CLI_ONLY
    assert len(read) > 30
    assert read - documented() == set()


def test_the_table_names_nothing_that_is_not_read() -> None:
    env = RecordingEnv()
    Settings.from_env(env)
    assert documented() - env.names - CLI_ONLY == set()
