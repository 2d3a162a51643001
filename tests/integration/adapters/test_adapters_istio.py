"""The Istio router's calls through the official kubernetes client, against a local HTTP server
answering the Kubernetes API paths (no cluster runs here; docs/traffic.md says so)."""

from __future__ import annotations

from pathlib import Path

from switchover.plan import Plan, plan_from_dict
from switchover.traffic.base import router_for
from tests.integration.adapters.conftest import FakeKube, free_port

VS = "/apis/networking.istio.io/v1beta1/namespaces/shop/virtualservices/orders"
DR = "/apis/networking.istio.io/v1beta1/namespaces/shop/destinationrules/orders"


def istio_plan(kubeconfig: Path) -> Plan:
    return plan_from_dict({
        "name": "orders", "stable": {"url": "http://127.0.0.1:8081"}, "candidate": {"url": "http://127.0.0.1:8082"},
        "traffic": {"driver": "istio", "istio": {"namespace": "shop", "host": "orders", "kubeconfig": str(kubeconfig)}},
    })


def test_server_side_apply_and_read_back(fake_kube: tuple[FakeKube, Path]) -> None:
    kube, kubeconfig = fake_kube
    router = router_for(istio_plan(kubeconfig))
    assert router.is_online()
    router.sync(istio_plan(kubeconfig))
    assert set(kube.objects) == {VS, DR}
    patches = [r for r in kube.requests if r["method"] == "PATCH"]
    assert all(r["content_type"] == "application/apply-patch+yaml" for r in patches)
    assert all("fieldManager=switchover" in r["query"] and "force=true" in r["query"] for r in patches)
    assert all(r["auth"] == "Bearer sw-adapters-token" for r in kube.requests)
    dr = kube.objects[DR]["spec"]
    assert [s["name"] for s in dr["subsets"]] == ["stable", "candidate"]
    assert dr["trafficPolicy"]["outlierDetection"]["consecutive5xxErrors"] == 5
    assert router.get_routes() == (0, 0)

    router.set_routes(10, 20)
    http = kube.objects[VS]["spec"]["http"][0]
    assert [(d["destination"]["subset"], d["weight"]) for d in http["route"]] == [("stable", 90), ("candidate", 10)]
    assert http["mirror"] == {"host": "orders", "subset": "candidate"}
    assert http["mirrorPercentage"] == {"value": 20.0}
    assert router.get_routes() == (10, 20)
    router.sync(istio_plan(kubeconfig))  # idempotent: keeps the weight the cluster has
    assert router.get_routes() == (10, 20)
    router.set_routes(0, 0)
    assert "mirror" not in kube.objects[VS]["spec"]["http"][0]
    assert router.get_routes() == (0, 0)


def test_unreachable_api_is_offline(tmp_path: Path) -> None:
    import yaml

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "x", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}],
        "users": [{"name": "x", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}]}))
    assert not router_for(istio_plan(kubeconfig)).is_online()
