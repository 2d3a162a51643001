"""The Istio router: a VirtualService (weights, ``mirror``/``mirrorPercentage``) and a
DestinationRule (the two subsets, outlier detection), applied with Kubernetes server-side apply
through the official client, and read back from the VirtualService the API server holds.

Rendering is pure (``render_virtual_service``, ``render_destination_rule``) and shared with
``switchover export istio``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from switchover.durations import format_duration
from switchover.errors import UserError
from switchover.traffic.base import clamp_percent

if TYPE_CHECKING:
    from switchover.plan import Plan
    from switchover.plan.traffic import IstioRouter as IstioSettings

GROUP = "networking.istio.io"
FIELD_MANAGER = "switchover"
APPLY_PATCH = "application/apply-patch+yaml"


def _settings(plan: Plan) -> IstioSettings:
    if plan.traffic.istio is None:
        raise UserError("traffic.istio: the istio router needs its section (at least host)")
    return plan.traffic.istio


def _vs_name(plan: Plan) -> str:
    return _settings(plan).virtual_service or plan.name


def _dr_name(plan: Plan) -> str:
    return _settings(plan).destination_rule or plan.name


def render_virtual_service(plan: Plan, weight: int, mirror_percent: int) -> dict[str, Any]:
    s = _settings(plan)
    clamp_percent(weight, "weight")
    clamp_percent(mirror_percent, "mirror_percent")
    route: dict[str, Any] = {
        "name": "switchover",
        "route": [
            {"destination": {"host": s.host, "subset": s.stable_subset}, "weight": 100 - weight},
            {"destination": {"host": s.host, "subset": s.candidate_subset}, "weight": weight},
        ],
    }
    if mirror_percent:
        route["mirror"] = ({"host": s.mirror_host} if s.mirror_host
                           else {"host": s.host, "subset": s.candidate_subset})
        route["mirrorPercentage"] = {"value": float(mirror_percent)}
    spec: dict[str, Any] = {"hosts": s.hosts or [s.host], "http": [route]}
    if s.gateways:
        spec["gateways"] = list(s.gateways)
    return {
        "apiVersion": f"{GROUP}/{s.api_version}", "kind": "VirtualService",
        "metadata": {"name": _vs_name(plan), "namespace": s.namespace,
                     "labels": {"app.kubernetes.io/managed-by": "switchover"}},
        "spec": spec,
    }


def render_destination_rule(plan: Plan) -> dict[str, Any]:
    s = _settings(plan)
    ejection = plan.traffic.ejection
    return {
        "apiVersion": f"{GROUP}/{s.api_version}", "kind": "DestinationRule",
        "metadata": {"name": _dr_name(plan), "namespace": s.namespace,
                     "labels": {"app.kubernetes.io/managed-by": "switchover"}},
        "spec": {
            "host": s.host,
            "subsets": [{"name": s.stable_subset, "labels": dict(s.stable_labels)},
                        {"name": s.candidate_subset, "labels": dict(s.candidate_labels)}],
            "trafficPolicy": {"outlierDetection": {
                "consecutive5xxErrors": ejection.consecutive_failures,
                "interval": "10s",
                "baseEjectionTime": format_duration(ejection.base_time),
                "maxEjectionPercent": 100,
            }},
        },
    }


def routes_from_virtual_service(obj: dict[str, Any], plan: Plan) -> tuple[int, int]:
    """(weight, mirror_percent) from a VirtualService as the API server returns it."""
    s = _settings(plan)
    for http in obj.get("spec", {}).get("http", []) or []:
        weights: dict[str, int] = {}
        for dest in http.get("route", []) or []:
            subset = (dest.get("destination") or {}).get("subset")
            weights[str(subset)] = int(dest.get("weight", 0) or 0)
        if s.candidate_subset in weights or s.stable_subset in weights:
            candidate = weights.get(s.candidate_subset, 0)
            if s.candidate_subset in weights and len(weights) == 1 and "weight" not in http["route"][0]:
                candidate = 100  # a single destination without a weight takes everything
            mirror = 0
            if http.get("mirror"):
                pct = http.get("mirrorPercentage") or {}
                mirror = round(float(pct.get("value", 100.0)))
            return candidate, mirror
    raise UserError(f"VirtualService {s.namespace}/{_vs_name(plan)} has no route to subsets "
                    f"{s.stable_subset}/{s.candidate_subset} (run sync first)")


class IstioRouter:
    name = "istio"

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.settings = _settings(plan)
        self._api: Any = None

    def _client(self) -> Any:
        if self._api is None:
            try:
                from kubernetes import client, config
            except ModuleNotFoundError:
                raise UserError("the istio router needs the kubernetes client: pip install 'switchover[k8s]'") from None
            try:
                if self.settings.kubeconfig or self.settings.context:
                    api_client = config.new_client_from_config(config_file=self.settings.kubeconfig,
                                                               context=self.settings.context)  # type: ignore[no-untyped-call]
                else:
                    try:
                        config.load_incluster_config()  # type: ignore[no-untyped-call]
                    except config.ConfigException:
                        config.load_kube_config()  # type: ignore[no-untyped-call]
                    api_client = client.ApiClient()
            except (config.ConfigException, OSError, TypeError) as exc:
                raise UserError(f"traffic.istio: cannot load Kubernetes credentials: {exc}") from None
            self._api = api_client
        return self._api

    def _custom(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self._client())

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(**kwargs, _request_timeout=(5, 30))
        except ApiException as exc:
            raise UserError(f"istio {what}: Kubernetes API answered {exc.status} {exc.reason}: "
                            f"{(exc.body or '')[:300]}") from None
        except HTTPError as exc:
            raise UserError(f"istio {what}: Kubernetes API unreachable: {exc}") from None
        except ValueError as exc:  # the client validates answers with pydantic (a ValueError)
            raise UserError(f"istio {what}: unexpected answer from the Kubernetes API: {exc}") from None

    def _apply(self, plural: str, body: dict[str, Any]) -> Any:
        return self._call(f"apply {plural} {body['metadata']['name']}",
                          self._custom().patch_namespaced_custom_object,
                          group=GROUP, version=self.settings.api_version, namespace=self.settings.namespace,
                          plural=plural, name=body["metadata"]["name"], body=body,
                          field_manager=FIELD_MANAGER, force=True, _content_type=APPLY_PATCH)

    def sync(self, plan: Plan) -> None:
        """Apply the DestinationRule, and the VirtualService at the weight it has now (0 when new)."""
        self.plan = plan
        self._apply("destinationrules", render_destination_rule(plan))
        try:
            weight, mirror = self.get_routes()
        except UserError:
            weight, mirror = 0, 0
        self._apply("virtualservices", render_virtual_service(plan, weight, mirror))

    def set_routes(self, weight: int, mirror_percent: int) -> None:
        self._apply("virtualservices", render_virtual_service(self.plan, weight, mirror_percent))

    def get_routes(self) -> tuple[int, int]:
        obj = self._call(f"get virtualservice {_vs_name(self.plan)}", self._custom().get_namespaced_custom_object,
                         group=GROUP, version=self.settings.api_version, namespace=self.settings.namespace,
                         plural="virtualservices", name=_vs_name(self.plan))
        return routes_from_virtual_service(dict(obj), self.plan)

    def is_online(self) -> bool:
        from kubernetes import client

        try:
            self._call("version", client.VersionApi(self._client()).get_code)
        except UserError:
            return False
        return True
