"""docs/distributed.md documents every setting the app reads."""

from __future__ import annotations

from tests.deploy.support import ROOT, app_setting_names


def test_every_setting_is_documented() -> None:
    text = (ROOT / "docs" / "distributed.md").read_text()
    missing = sorted(name for name in app_setting_names() if f"`{name}`" not in text)
    assert not missing, f"docs/distributed.md does not document {missing}"
