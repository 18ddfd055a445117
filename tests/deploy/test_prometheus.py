"""deploy/prometheus (scrape configs, alert rules and their unit tests) passes promtool, the
Grafana dashboard is a well-formed dashboard, and every metric either names exists in the code."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from mediagen.metrics.definitions import exposed_names
from tests.deploy.support import ROOT, STRICT, run

PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "mediagen.json"
#: A metric name in an expression: ours all start with mediagen_.
METRIC = re.compile(r"\bmediagen_[a-z0-9_]+")


def promtool() -> str:
    """Debian's promtool, which `bash .ci/check-deploy` installs (a missing one fails there)."""
    path = shutil.which("promtool")
    if path is None:
        reason = "promtool is not installed: apt-get install -y prometheus (.ci/check-deploy does)"
        if STRICT:
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.mark.parametrize("config", ["prometheus.yml"])
def test_scrape_config(config: str) -> None:
    run(promtool(), "check", "config", str(PROMETHEUS / config), cwd=PROMETHEUS)


def test_kubernetes_scrape_config(tmp_path: Path) -> None:
    """Debian builds promtool without Kubernetes service discovery, so the rest of the file is
    checked with that one block swapped for a static target; the block itself must still be
    a pod discovery limited to the mediagen namespace."""
    config = yaml.safe_load((PROMETHEUS / "prometheus-k8s.yml").read_text())
    (scrape,) = config["scrape_configs"]
    (discovery,) = scrape.pop("kubernetes_sd_configs")
    assert discovery == {"role": "pod", "namespaces": {"names": ["mediagen"]}}
    scrape["static_configs"] = [{"targets": ["127.0.0.1:9464"]}]
    (tmp_path / "alerts.yml").write_text((PROMETHEUS / "alerts.yml").read_text())
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    run(promtool(), "check", "config", str(tmp_path / "prometheus.yml"), cwd=tmp_path)


def test_kubernetes_relabelling_keeps_the_named_ports() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus-k8s.yml").read_text())
    keep = config["scrape_configs"][0]["relabel_configs"][0]
    pattern = re.compile(f"^(?:{keep['regex']})$")  # Prometheus anchors relabel regexes
    assert pattern.match("api;metrics") and pattern.match("worker;metrics")
    assert pattern.match("gateway;http")
    assert not pattern.match("api;grpc") and not pattern.match("worker;health")


def test_alert_rules() -> None:
    run(promtool(), "check", "rules", str(PROMETHEUS / "alerts.yml"))


def test_alerts_fire_when_they_should() -> None:
    run(promtool(), "test", "rules", str(PROMETHEUS / "alerts.test.yml"), cwd=PROMETHEUS)


def _alert_exprs() -> dict[str, str]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}


def test_the_promised_alerts_exist() -> None:
    assert set(_alert_exprs()) == {
        "MediagenHighErrorRate",
        "MediagenGatewayErrorRate",
        "MediagenQueueTooOld",
        "MediagenJobsStuckRunning",
        "MediagenProviderFailureRate",
        "MediagenNoLiveWorker",
        "MediagenLeasesLost",
        "MediagenDependencyDown",
    }


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _dashboard_exprs() -> list[str]:
    return [t["expr"] for p in _dashboard()["panels"] for t in p.get("targets", [])]


def test_dashboard_is_well_formed() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "mediagen" and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs), panel["title"]


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_every_metric_they_name_exists_in_the_code(source: str) -> None:
    exprs = list(_alert_exprs().values()) if source == "alerts" else _dashboard_exprs()
    named = {name for expr in exprs for name in METRIC.findall(expr)}
    assert len(named) >= 5
    assert named - exposed_names() == set()


def test_the_dashboard_shows_every_metric() -> None:
    named = {name for expr in _dashboard_exprs() for name in METRIC.findall(expr)}
    # Each metric by its base name: a histogram shows as _bucket, a counter as _total.
    bases = {re.sub(r"_(bucket|sum|count|total)$", "", n) for n in named}
    exported = {re.sub(r"_(bucket|sum|count|total)$", "", n) for n in exposed_names()}
    assert exported - bases - {"mediagen_process_info"} == set()
