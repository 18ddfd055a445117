"""The marker a create carries in its webhook URL: formed and read back. No I/O."""

from __future__ import annotations

import pytest

from mediagen.providers.marker import Marker

JOB = "0b9d8a1e-5f0c-4d3e-9a51-2f6a7f6f0a01"


def test_the_webhook_url_carries_job_and_attempt() -> None:
    url = Marker(JOB, 2).webhook_url("https://media.example.com/webhooks/replicate")
    assert url == f"https://media.example.com/webhooks/replicate?job={JOB}&attempt=2"
    assert Marker.from_webhook_url(url) == Marker(JOB, 2)


def test_a_base_with_its_own_query_keeps_it() -> None:
    url = Marker(JOB, 1).webhook_url("https://gw.example.com/webhooks/replicate?tenant=t1")
    assert url.startswith("https://gw.example.com/webhooks/replicate?tenant=t1&job=")
    assert Marker.from_webhook_url(url) == Marker(JOB, 1)


def test_only_the_query_counts_so_a_moved_gateway_still_finds_old_markers() -> None:
    old = Marker(JOB, 4).webhook_url("http://10.0.0.1:8080/webhooks/replicate")
    new = Marker(JOB, 4).webhook_url("https://media.example.com/hooks")
    assert Marker.from_webhook_url(old) == Marker.from_webhook_url(new) == Marker(JOB, 4)


@pytest.mark.parametrize(
    "webhook",
    [
        None,
        42,
        "",
        "https://someone.else/hook",
        f"https://h/w?job={JOB}",  # no attempt
        "https://h/w?attempt=1",  # no job
        f"https://h/w?job={JOB}&attempt=one",
        f"https://h/w?job={JOB}&attempt=-1",
        f"https://h/w?job={JOB}&attempt=%C2%B2",  # a superscript two is no attempt number
        f"https://h/w?job={JOB}&job=other&attempt=1",  # two jobs: not ours to guess
    ],
)
def test_anything_else_carries_no_marker(webhook: object) -> None:
    assert Marker.from_webhook_url(webhook) is None


def test_markers_differ_by_job_and_by_attempt() -> None:
    base = "http://127.0.0.1:8080/webhooks/replicate"
    urls = {Marker(j, a).webhook_url(base) for j in (JOB, JOB[::-1]) for a in (1, 2)}
    assert len({Marker.from_webhook_url(u) for u in urls}) == 4
