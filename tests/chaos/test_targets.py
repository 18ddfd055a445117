"""The chaos run refuses anything off loopback, without connecting to it."""

from __future__ import annotations

import socket

import pytest

from mediagen.chaos.cluster import ClusterOptions
from mediagen.chaos.targets import NonLoopbackTarget, is_loopback_host, require_loopback_url
from mediagen.cli import main


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "host", ["10.0.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0", "8.8.8.8", "db.example"]
)
def test_other_hosts(host: str) -> None:
    assert not is_loopback_host(host)


def test_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(*args: object, **kwargs: object) -> object:
        raise AssertionError("looked up a name")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    require_loopback_url("postgresql+asyncpg://postgres@127.0.0.1:5432/test", "db")
    with pytest.raises(NonLoopbackTarget, match="redis must be on loopback"):
        require_loopback_url("redis://cache.internal:6379/0", "redis")
    with pytest.raises(NonLoopbackTarget):
        ClusterOptions(database_url="postgresql+asyncpg://u@10.1.2.3/db")


def test_the_command_refuses_before_starting_anything(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_connect(*args: object, **kwargs: object) -> object:
        raise AssertionError("connected")

    monkeypatch.setattr(socket.socket, "connect", no_connect)
    assert main(["chaos", "--redis-url", "redis://192.168.0.7:6379/0"]) == 2
    err = capsys.readouterr().err
    assert "redis_url must be on loopback" in err and "192.168.0.7" in err
