"""`switchover export argo`: an Argo Rollouts ``Rollout`` canary strategy and ``AnalysisTemplate``s
equivalent to the plan.

canary steps become ``setWeight`` + ``pause {duration: hold}``; ``pause`` and ``manual`` steps become an
indefinite ``pause`` (``kubectl argo rollouts promote`` continues); ``hold`` becomes a timed pause.
The SLOs become background analysis from the first step: error rate, p95, and the candidate's p95
against stable's in the same window. Argo counts failures in total where switchover counts them in a
row, and a NaN (no data) matches neither condition, which Argo calls inconclusive, as switchover does.
Steps Argo has no equivalent for (data movement, shadow, webhooks, commands) are listed in a comment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from switchover.export._yaml import argo_duration, dump_all
from switchover.metrics.prometheus import DEFAULT_QUERIES, prom_duration, render
from switchover.plan.analysis import Prometheus
from switchover.plan.steps import Canary, Hold, Manual, Pause

if TYPE_CHECKING:
    from switchover.plan import Plan

API = "argoproj.io/v1alpha1"


def canary_steps(plan: Plan) -> tuple[list[dict[str, Any]], list[str]]:
    steps: list[dict[str, Any]] = []
    skipped: list[str] = []
    for step in plan.step_list():
        if isinstance(step, Canary):
            steps.append({"setWeight": step.weight})
            if step.hold > 0:
                steps.append({"pause": {"duration": argo_duration(step.hold)}})
        elif isinstance(step, Pause):
            steps.append({"pause": {"duration": argo_duration(step.duration)} if step.duration else {}})
        elif isinstance(step, Manual):
            steps.append({"pause": {}})
        elif isinstance(step, Hold):
            steps.append({"pause": {"duration": argo_duration(step.duration)}})
        else:
            skipped.append(str(getattr(step, "kind", type(step).__name__)))
    return steps, skipped


def _query(plan: Plan, key: str, role: str = "canary") -> str:
    settings = plan.metrics.prometheus or Prometheus()
    template = getattr(settings.queries, key, None) or DEFAULT_QUERIES[key]
    return render(template, app=plan.name, role=role, interval=prom_duration(plan.analysis.interval))


def analysis_templates(plan: Plan) -> list[dict[str, Any]]:
    settings = plan.metrics.prometheus or Prometheus()
    interval = argo_duration(plan.analysis.interval)
    limits = {"interval": interval,
              # Argo fails once failures exceed failureLimit; switchover rolls back at failure_limit.
              "failureLimit": plan.analysis.failure_limit - 1,
              "inconclusiveLimit": plan.analysis.inconclusive_limit - 1}
    p95_s = plan.slo.p95_ms / 1000
    ratio = plan.analysis.baseline.p95_ratio
    metrics = [
        ("error-rate", _query(plan, "error_rate"), plan.slo.error_rate),
        ("p95", _query(plan, "p95"), p95_s),
        ("p95-vs-stable", f"({_query(plan, 'p95')}) / ({_query(plan, 'p95', 'stable')})", ratio),
    ]
    out = []
    for name, query, bound in metrics:
        out.append({
            "apiVersion": API, "kind": "AnalysisTemplate",
            "metadata": {"name": f"{plan.name}-{name}", "labels": {"app.kubernetes.io/managed-by": "switchover"}},
            "spec": {"metrics": [{
                "name": name, **limits,
                "successCondition": f"result[0] < {bound:g}",
                "failureCondition": f"result[0] >= {bound:g}",
                "provider": {"prometheus": {"address": settings.url, "query": query}},
            }]},
        })
    return out


def rollout(plan: Plan) -> tuple[dict[str, Any], list[str]]:
    steps, skipped = canary_steps(plan)
    analysis: dict[str, Any] = {"templates": [{"templateName": t["metadata"]["name"]} for t in analysis_templates(plan)]}
    first_weight = next((i for i, s in enumerate(steps) if "setWeight" in s), None)
    if first_weight:
        analysis["startingStep"] = first_weight  # judged from the first weight on, as switchover does
    canary: dict[str, Any] = {"analysis": analysis, "steps": steps}
    istio = plan.traffic.istio
    if plan.traffic.driver == "istio" and istio is not None:
        canary["trafficRouting"] = {"istio": {
            "virtualService": {"name": istio.virtual_service or plan.name, "routes": ["switchover"]},
            "destinationRule": {"name": istio.destination_rule or plan.name,
                                "canarySubsetName": istio.candidate_subset, "stableSubsetName": istio.stable_subset},
        }}
    body = {
        "apiVersion": API, "kind": "Rollout",
        "metadata": {"name": plan.name, "labels": {"app.kubernetes.io/managed-by": "switchover"}},
        # The pods stay in the team's Deployment; the Rollout takes it over by reference.
        "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": plan.name},
                 "strategy": {"canary": canary}},
    }
    return body, skipped


def export_argo(plan: Plan) -> str:
    body, skipped = rollout(plan)
    header = f"# Argo Rollouts equivalent of switchover plan {plan.name!r}, written by `switchover export argo`.\n"
    if skipped:
        header += f"# Not expressible in a Rollout, run them with switchover: {', '.join(dict.fromkeys(skipped))}\n"
    return dump_all([body, *analysis_templates(plan)], header)
