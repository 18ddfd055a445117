"""docs/threat-model.md names only code and tests that exist: a control whose "where" or
"shown by" went stale would be a claim nobody checks."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "docs" / "threat-model.md").read_text()
#: Backticked repository paths: `mediagen/...` or `tests/...`, files or folders (ending in /).
PATHS = sorted(set(re.findall(r"`((?:mediagen|tests)/[^`\s]*)`", TEXT)))
#: The rows of its tables (header rows included, separator rows not).
TABLE_ROWS = [line for line in TEXT.splitlines() if line.startswith("| ") and "---" not in line]


def test_the_threat_model_names_paths() -> None:
    assert len(PATHS) > 20, PATHS


def test_every_path_the_threat_model_names_exists() -> None:
    missing = [path for path in PATHS if not (ROOT / path).exists()]
    assert not missing, f"docs/threat-model.md names paths that do not exist: {missing}"


def test_every_control_is_shown_by_a_test() -> None:
    controls = TABLE_ROWS[TABLE_ROWS.index(next(r for r in TABLE_ROWS if "shown by" in r)) + 1 :]
    assert len(controls) >= 10
    for row in controls:
        shown_by = row.rstrip(" |").rsplit("|", 1)[1]
        assert re.search(r"`tests/[^`]+`", shown_by), row
