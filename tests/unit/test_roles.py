"""Distributed roles refuse to start without Redis, with a message that says what to do."""

from pathlib import Path

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


@pytest.mark.parametrize("role", ["api", "worker", "scheduler", "gateway", "serve"])
@pytest.mark.parametrize("key", [None, "", "mediagen-dev-secret", "CHANGE-ME"])
def test_distributed_roles_refuse_a_missing_or_public_secret_key(
    role: str, key: str | None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # 127.0.0.1:9 (discard) is never dialled: the check comes before any connection.
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:9/0")
    if key is None:
        monkeypatch.delenv("SECRET_KEY", raising=False)
    else:
        monkeypatch.setenv("SECRET_KEY", key)
    assert main([role]) == 2
    error = capsys.readouterr().err
    assert "refuses to start" in error and "SECRET_KEY" in error


def test_serve_refuses_a_public_secret_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("SECRET_KEY", "mediagen-dev-secret")
    assert main(["serve", "--data-dir", str(tmp_path), "--grpc-port", "0", "--http-port", "0"]) == 2
    assert "public value" in capsys.readouterr().err
