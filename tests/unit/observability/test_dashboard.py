"""The Grafana dashboard in deploy/ only queries metrics that Metrics registers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from treadle.observability import Metrics

DASHBOARD = Path(__file__).parents[3] / "deploy" / "grafana-dashboard.json"
METRIC_NAME = re.compile(r"\btreadle_[a-z0-9_]+")


def expressions(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression in panels (nested in rows too) and in variable queries."""
    found: list[str] = []
    panels = list(dashboard["panels"])
    while panels:
        panel = panels.pop()
        panels.extend(panel.get("panels", []))
        found.extend(target["expr"] for target in panel.get("targets", []))
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            found.append(query["query"])
    return found


def test_dashboard_is_a_grafana_dashboard_with_a_datasource_variable() -> None:
    """The file is dashboard JSON with a schema version and a Prometheus datasource variable."""
    dashboard = json.loads(DASHBOARD.read_text())

    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


def test_every_expression_uses_only_registered_metrics() -> None:
    """No PromQL in the dashboard names a metric that the code does not export."""
    registered = Metrics().metric_names()
    exprs = expressions(json.loads(DASHBOARD.read_text()))

    used = {name for expr in exprs for name in METRIC_NAME.findall(expr)}
    assert exprs
    assert used - registered == set()


def test_every_metric_family_is_on_the_dashboard() -> None:
    """Each metric Treadle exports appears in at least one panel, so none goes unwatched
    (the standard process and Python families, and the build info, are not Treadle's own)."""
    families = {
        family.name
        for family in Metrics().registry.collect()
        if family.name.startswith("treadle_") and family.name != "treadle_build_info"
    }
    text = " ".join(expressions(json.loads(DASHBOARD.read_text())))

    assert {name for name in families if name not in text} == set()
