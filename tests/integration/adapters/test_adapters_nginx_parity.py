"""One plan, nginx in the path: the nginx router's `mirror` feeds a real `switchover parity serve`
(at the plan's `parity.listen`), which compares stable's and the candidate's answers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from switchover.plan import load_plan
from switchover.traffic.base import router_for
from switchover.traffic.nginx import render_config
from tests.integration.adapters.conftest import Nginx, Service, free_port, stop_process, wait_port

SWITCHOVER = [sys.executable, "-m", "switchover"]


@pytest.mark.nginx
@pytest.mark.slow
def test_nginx_mirror_feeds_parity_serve(tmp_path: Path, nginx: Nginx, services: tuple[Service, Service]) -> None:
    stable, candidate = services
    serve_port = free_port()
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(yaml.safe_dump({
        "name": "sw_adapters_parity", "stable": {"url": stable.url}, "candidate": {"url": candidate.url},
        "state": f"sqlite:///{tmp_path / 'state.db'}",
        "parity": {"listen": f"127.0.0.1:{serve_port}", "store": str(tmp_path / "parity.db")},
        "traffic": {"driver": "nginx", "listen": f"127.0.0.1:{nginx.port}", "nginx": {
            "config_path": str(nginx.include), "test": nginx.argv("-t", "-q"), "reload": nginx.argv("-s", "reload")}},
    }))
    plan = load_plan(plan_path)
    assert plan.traffic.nginx is not None
    nginx.include.write_text(render_config(plan, plan.traffic.nginx, 0, 0))
    nginx.start()
    serve = subprocess.Popen([*SWITCHOVER, "parity", "serve", "--plan", str(plan_path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(serve_port, 20)
        router = router_for(plan)
        router.set_routes(0, 100)
        time.sleep(0.3)
        with httpx.Client(base_url=f"http://127.0.0.1:{nginx.port}", timeout=5) as users:
            answers = [users.get(f"/orders/{i}") for i in range(60)]
        assert {a.json()["service"] for a in answers} == {"stable"}  # users only ever see stable
        report: dict[str, object] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done = subprocess.run([*SWITCHOVER, "parity", "report", "--plan", str(plan_path), "--json"],
                                  capture_output=True, text=True, timeout=60)
            report = json.loads(done.stdout or "{}")
            if int(report.get("compared", 0)) >= 60:  # type: ignore[call-overload]
                break
            time.sleep(0.5)
        assert report["compared"] == 60
        fields = {f["field"] for e in report["endpoints"] for f in e["fields"]}  # type: ignore[attr-defined]
        assert "$.service" in fields  # the one field where stable and the candidate differ
    finally:
        stop_process(serve)
