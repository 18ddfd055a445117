"""Distributed roles refuse to start without Redis, with a message that says what to do."""

import pytest

from mediagen.cli import main


@pytest.mark.parametrize("role", ["api", "worker", "scheduler"])
def test_distributed_roles_need_redis(
    role: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main([role]) == 2
    error = capsys.readouterr().err
    assert "needs REDIS_URL" in error and "mediagen serve" in error
