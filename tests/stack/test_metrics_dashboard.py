"""The Grafana dashboard in docs/ has an importable shape and charts only exported metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import algorithm.service.observability  # noqa: F401  (registers the algorithm service's metrics)
import web.edge.observability  # noqa: F401  (and web's)
from worker.observability import training_metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
METRIC_NAME = re.compile(r"\b(?:http_server|textclf)_[a-z_]+")


SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}


def exported_names() -> set[str]:
    """Every sample name the registered metrics can export (labelled ones before any sample)."""
    training_metrics()  # created on first use in the worker
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        for suffix in SUFFIXES.get(family.type, [""])
    }


def test_dashboard_is_an_importable_grafana_model() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 30
    assert [i["pluginId"] for i in dashboard["__inputs"]] == ["prometheus"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        for target in panel.get("targets", []):
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}"


def test_every_charted_metric_is_exported() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    charted = {name for expr in exprs for name in METRIC_NAME.findall(expr)}
    titles = " ".join(panel["title"] for panel in dashboard["panels"])
    for shown in ("latency", "Errors", "Batch", "version", "Training runs"):
        assert shown in titles
    assert charted and charted <= exported_names(), charted - exported_names()
