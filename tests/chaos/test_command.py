"""`mediagen chaos` refuses bad sizes before it starts anything."""

from __future__ import annotations

import subprocess

import pytest

from mediagen.cli import build_parser, main


@pytest.fixture(autouse=True)
def nothing_started(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> object:
        raise AssertionError("started a process")

    monkeypatch.setattr(subprocess, "Popen", refuse)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--jobs", "0"], "jobs per scenario must be 1 to 1000"),
        (["--workers", "20"], "workers must be 1 to 8"),
        (["--database-url", "postgresql+asyncpg://u@db.example/x"], "must be on loopback"),
    ],
)
def test_bad_options_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["chaos", *argv]) == 2
    assert message in capsys.readouterr().err


def test_scenarios_are_chosen_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["chaos", "--scenario", "baseline", "--scenario", "api-kill"])
    assert args.scenario == ["baseline", "api-kill"]
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["chaos", "--scenario", "meteor-strike"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'meteor-strike'" in capsys.readouterr().err
