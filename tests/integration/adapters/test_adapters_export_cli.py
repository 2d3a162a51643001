"""`switchover export ...` as a user runs it; the nginx export passes a real `nginx -t`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.integration.adapters.conftest import NGINX, free_port, nginx_main_conf

SWITCHOVER = str(Path(sys.executable).parent / "switchover")


def plan_file(tmp_path: Path) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({
        "name": "sw_adapters_orders", "stable": {"url": "http://127.0.0.1:8081"},
        "candidate": {"url": "http://127.0.0.1:8082"}, "traffic": {
            "listen": f"127.0.0.1:{free_port()}", "sticky": {"cookie": "uid"},
            "nginx": {"mirror_url": "http://127.0.0.1:9999"},
            "istio": {"host": "orders"},
            "route53": {"zone_id": "Z1", "record_name": "api.example.com", "stable_value": "192.0.2.1",
                        "candidate_value": "192.0.2.2"}},
        "steps": [{"canary": {"weight": 20, "hold": "2m"}}, {"canary": {"weight": 100, "hold": "10m"}}]}))
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SWITCHOVER, "export", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.nginx
def test_exported_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    out = tmp_path / "nginx" / "switchover.conf"
    out.parent.mkdir()
    (out.parent / "logs").mkdir()
    answer = run("nginx", str(plan_file(tmp_path)), "--weight", "10", "--mirror", "5", "--out", str(out))
    assert answer.returncode == 0, answer.stderr
    assert "$cookie_uid" in out.read_text()
    conf = out.parent / "nginx.conf"
    conf.write_text(nginx_main_conf(out.parent, out))
    check = subprocess.run([NGINX, "-p", str(out.parent), "-c", str(conf), "-t"], capture_output=True, text=True,
                           timeout=30)
    assert check.returncode == 0, check.stderr
    assert "syntax is ok" in check.stderr


def test_every_export_prints_parseable_output(tmp_path: Path) -> None:
    plan = str(plan_file(tmp_path))
    argo = run("argo", plan)
    assert argo.returncode == 0, argo.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(argo.stdout)]
    assert kinds == ["Rollout", "AnalysisTemplate", "AnalysisTemplate", "AnalysisTemplate"]
    istio = run("istio", plan, "--weight", "10", "--mirror", "20")
    assert [d["kind"] for d in yaml.safe_load_all(istio.stdout)] == ["VirtualService", "DestinationRule"]
    terraform = run("terraform-route53", plan)
    assert "aws_route53_record" in json.loads(terraform.stdout)["resource"]
    grafana = run("grafana", plan)
    assert json.loads(grafana.stdout)["title"] == "switchover: sw_adapters_orders"


def test_bad_input_exits_2_without_traceback(tmp_path: Path) -> None:
    missing = run("argo", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "no such plan file" in missing.stderr
    bad_weight = run("istio", str(plan_file(tmp_path)), "--weight", "150")
    assert bad_weight.returncode == 2 and "weight must be an integer from 0 to 100" in bad_weight.stderr
    assert "Traceback" not in missing.stderr + bad_weight.stderr
