"""`switchover export grafana`: a dashboard of the golden signals (traffic, errors, latency,
saturation) by role, over the metric names the proxy serves and teams already query."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from switchover.metrics.prometheus import render

if TYPE_CHECKING:
    from switchover.plan import Plan

DS = {"type": "prometheus", "uid": "${datasource}"}


def _panel(pid: int, title: str, targets: list[tuple[str, str]], unit: str, x: int, y: int,
           threshold: float | None = None) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": unit}
    if threshold is not None:
        defaults["thresholds"] = {"mode": "absolute", "steps": [{"color": "green", "value": None},
                                                                {"color": "red", "value": threshold}]}
        defaults["custom"] = {"thresholdsStyle": {"mode": "line"}}
    return {
        "id": pid, "type": "timeseries", "title": title, "datasource": DS,
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "targets": [{"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend}
                    for i, (expr, legend) in enumerate(targets)],
    }


def dashboard(plan: Plan) -> dict[str, Any]:
    sel = f'app="{plan.name}"'
    rate = "[$__rate_interval]"
    panels = [
        _panel(1, "Traffic: requests per second by role",
               [(f"sum by (role) (rate(http_requests_total{{{sel}}}{rate}))", "{{role}}")], "reqps", 0, 0),
        _panel(2, "Errors: 5xx share by role",
               [(f'sum by (role) (rate(http_requests_total{{{sel},status=~"5.."}}{rate})) / '
                 f"sum by (role) (rate(http_requests_total{{{sel}}}{rate}))", "{{role}}")],
               "percentunit", 12, 0, plan.slo.error_rate),
        _panel(3, "Latency: p95 by role",
               [(f"histogram_quantile(0.95, sum by (le, role) (rate(http_request_duration_seconds_bucket"
                 f"{{{sel}}}{rate})))", "p95 {{role}}")], "s", 0, 8, plan.slo.p95_ms / 1000),
        _panel(4, "Latency: p99 by role",
               [(f"histogram_quantile(0.99, sum by (le, role) (rate(http_request_duration_seconds_bucket"
                 f"{{{sel}}}{rate})))", "p99 {{role}}")], "s", 12, 8,
               plan.slo.p99_ms / 1000 if plan.slo.p99_ms else None),
    ]
    source = plan.metrics.saturation
    if source is not None and source.query:
        panels.append(_panel(5, "Saturation by role",
                             [(render(source.query, app=plan.name, role=role, interval="$__rate_interval"), role)
                              for role in ("stable", "canary")], "percentunit", 0, 16, plan.slo.saturation))
    return {
        "uid": re.sub(r"[^A-Za-z0-9_-]", "-", f"switchover-{plan.name}")[:40],
        "title": f"switchover: {plan.name}",
        "tags": ["switchover", "canary"],
        "schemaVersion": 39,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "10s",
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus",
                                 "label": "Prometheus"}]},
        "panels": panels,
    }


def export_grafana(plan: Plan) -> str:
    return json.dumps(dashboard(plan), indent=2) + "\n"
