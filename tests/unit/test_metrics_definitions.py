"""The metric definitions: one prefix, bounded label names, every metric documented in the
README's Metrics table, and what a scrape can show derived from them."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import generate_latest

from mediagen.metrics import definitions as m
from mediagen.metrics.http import method_label, route_label

ROOT = Path(__file__).resolve().parents[2]
#: The only label names allowed: none of them can carry an id, a tenant or a prompt.
BOUNDED_LABELS = {
    "method", "code", "route", "status", "model", "state", "reason", "operation", "outcome",
    "action", "role", "version", "kind", "component", "budget",
}  # fmt: skip


def test_every_metric_is_mediagen_and_bounded() -> None:
    assert len(m.ALL) >= 25
    for metric in m.ALL:
        assert metric._name.startswith("mediagen_"), metric._name
        assert set(metric._labelnames) <= BOUNDED_LABELS, metric._name
        assert metric._documentation.strip(), metric._name


def test_every_metric_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    # Counters by their series name (``_total``), everything else by its own.
    documented = {
        re.sub(r"_total$", "", n) for n in re.findall(r"`(mediagen_[a-z0-9_]+)`", section)
    }
    assert {metric._name for metric in m.ALL} - documented == set()


def test_exposed_names_match_a_real_scrape() -> None:
    m.JOB_QUEUED.labels(model="x/y").observe(1.0)
    m.JOBS_SUBMITTED.labels(model="x/y").inc(0)
    text = generate_latest(m.registry()).decode()
    shown = set(re.findall(r"^(mediagen_[a-z0-9_]+)", text, re.MULTILINE))
    assert {"mediagen_job_queued_seconds_bucket", "mediagen_jobs_submitted_total"} <= shown
    assert shown <= m.exposed_names()
    assert not any(name.endswith("_created") for name in shown)


def test_routes_are_templates_or_fixed_words() -> None:
    assert route_label({"path": "/api/v1/jobs/x", "mediagen.route": "/api/v1/jobs/{id}"}) == (
        "/api/v1/jobs/{id}"
    )
    assert route_label({"path": "/files/abc/0.png"}) == "/files/{key}"
    assert route_label({"path": "/docs/swagger-ui.css"}) == "/docs"
    assert route_label({"path": "/metrics"}) == "/metrics"
    assert route_label({"path": "/wp-admin/setup.php"}) == "other"


def test_methods_are_the_standard_ones_or_other() -> None:
    assert method_label({"method": "PATCH"}) == "PATCH"
    assert method_label({"method": "BREW"}) == "OTHER"
