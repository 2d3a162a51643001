"""`switchover parity serve --admin HOST:PORT`: the report and health on their own address, so that
the listen address compares every copy, /healthz and /api/v1/parity included (real sockets, the real CLI)."""

from __future__ import annotations

import socket
import sys
from typing import Any

import httpx

from switchover.demo.runner import free_port
from tests.integration.parity.conftest import cli, start_serve, wait_for, write_plan

IGNORE = {"ignore": ["$.generated_at", "$.items[*].etag"]}


def start_serve_with_admin(procs: Any, plan: Any) -> tuple[str, str]:
    """`parity serve --listen ... --admin ...` on free ports; returns both URLs once the admin answers."""
    listen, admin = free_port(), free_port()
    child = procs.start([sys.executable, "-m", "switchover", "parity", "serve", "--plan", str(plan),
                         "--listen", f"127.0.0.1:{listen}", "--admin", f"127.0.0.1:{admin}"])

    def up() -> bool:
        if child.poll() is not None:
            raise AssertionError(f"parity serve exited with {child.returncode}")
        try:
            return httpx.get(f"http://127.0.0.1:{admin}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, 20, "parity serve's admin address")
    return f"http://127.0.0.1:{listen}", f"http://127.0.0.1:{admin}"


def ready_line(tmp: Any) -> str:
    """The line `parity serve` prints once it listens (its output goes to the processes' log)."""
    def lines() -> list[str]:
        log = (tmp / "processes.log").read_text(errors="replace")
        return [line for line in log.splitlines() if line.startswith("parity serve listening on ")]

    wait_for(lambda: bool(lines()), 20, "the ready line")
    return lines()[0]


def test_with_a_separate_admin_address_copies_of_the_admin_paths_are_compared(services, processes, tmp_path) -> None:
    stable, candidate = services(), services()
    plan = write_plan(tmp_path, stable.url, candidate.url, IGNORE)
    listen, admin = start_serve_with_admin(processes, plan)
    with httpx.Client(base_url=listen) as mirror_source:
        # Copies of users' requests to exactly the admin paths are taken like any other copy.
        for path in ("/healthz", "/api/v1/parity", "/orders/1"):
            r = mirror_source.get(path)
            assert (r.status_code, r.content) == (202, b""), path
    with httpx.Client(base_url=admin) as monitor:
        wait_for(lambda: monitor.get("/api/v1/parity").json()["compared"] == 3, what="the three copies to be diffed")
        report = monitor.get("/api/v1/parity").json()
        assert monitor.get("/healthz").json() == {"ok": True}
        missing = monitor.get("/orders/1")
        assert missing.status_code == 404 and "/orders/1" in missing.json()["error"]
        assert monitor.post("/healthz").status_code == 405
    assert report["serve"]["received"] == 3  # the monitor's calls are not copies
    assert {ep["endpoint"] for ep in report["endpoints"]} == {"GET /healthz", "GET /api/v1/parity",
                                                              "GET /orders/{id}"}
    assert report["regressed"] == 0
    # Stable and the candidate were both asked for the copies of the admin paths, as shadow traffic.
    for side in (stable, candidate):
        assert {(m, p, h.get("x-switchover-shadow")) for m, p, h in side.seen} >= {
            ("GET", "/healthz", "1"), ("GET", "/api/v1/parity", "1")}
    assert f"admin={admin.removeprefix('http://')}" in ready_line(tmp_path)


def test_without_admin_the_listen_address_still_answers_report_and_health(services, processes, tmp_path) -> None:
    stable, candidate = services(), services()
    plan = write_plan(tmp_path, stable.url, candidate.url, IGNORE)
    listen = start_serve(processes, plan, tmp_path)
    with httpx.Client(base_url=listen) as client:
        assert client.get("/healthz").json() == {"ok": True}
        assert client.get("/orders/1").status_code == 202
        wait_for(lambda: client.get("/api/v1/parity").json()["compared"] == 1, what="the copy to be diffed")
    assert not [p for _, p, _ in stable.seen if p in ("/healthz", "/api/v1/parity")]
    assert f"admin={listen.removeprefix('http://')} (the listen address" in ready_line(tmp_path)


def test_a_bad_or_busy_admin_address_exits_2_naming_the_option(services, tmp_path) -> None:
    stable, candidate = services(), services()
    plan = write_plan(tmp_path, stable.url, candidate.url, IGNORE)
    listen = free_port()

    bad = cli("parity", "serve", "--plan", str(plan), "--listen", f"127.0.0.1:{listen}", "--admin", "localhost")
    assert bad.returncode == 2
    assert "--admin: expected HOST:PORT" in bad.stderr and "'localhost'" in bad.stderr

    same = cli("parity", "serve", "--plan", str(plan), "--listen", f"127.0.0.1:{listen}",
               "--admin", f"127.0.0.1:{listen}")
    assert same.returncode == 2 and "--admin" in same.stderr and "listen address" in same.stderr

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = cli("parity", "serve", "--plan", str(plan), "--listen", f"127.0.0.1:{listen}",
                   "--admin", f"127.0.0.1:{port}", timeout=60)
    assert busy.returncode == 2
    assert f"--admin: cannot listen on 127.0.0.1:{port}: Address already in use" in busy.stderr
    assert "Traceback" not in busy.stderr and "parity serve listening" not in busy.stdout


def test_the_plan_can_name_the_admin_address(services, processes, tmp_path) -> None:
    stable, candidate = services(), services()
    admin_port = free_port()
    plan = write_plan(tmp_path, stable.url, candidate.url, {**IGNORE, "admin": f"127.0.0.1:{admin_port}"})
    listen = start_serve(processes, plan, tmp_path)  # no --admin: parity.admin is used
    admin = f"http://127.0.0.1:{admin_port}"
    with httpx.Client(base_url=listen) as client:
        assert client.get("/healthz").status_code == 202  # a copy like any other, compared
    with httpx.Client(base_url=admin) as monitor:
        assert monitor.get("/healthz").json() == {"ok": True}
        wait_for(lambda: monitor.get("/api/v1/parity").json()["compared"] == 1, what="the copy to be diffed")
    assert f"admin=127.0.0.1:{admin_port}" in ready_line(tmp_path)

    same = write_plan(tmp_path, stable.url, candidate.url, {"admin": listen.removeprefix("http://")})
    clash = cli("parity", "serve", "--plan", str(same), "--listen", listen.removeprefix("http://"))
    assert clash.returncode == 2 and "parity.admin" in clash.stderr and "listen address" in clash.stderr
    bad = write_plan(tmp_path, stable.url, candidate.url, {"admin": "localhost"})
    wrong = cli("parity", "serve", "--plan", str(bad))
    assert wrong.returncode == 2 and "plan.yaml" in wrong.stderr and "admin" in wrong.stderr


def test_with_a_token_the_report_needs_it_and_health_does_not(services, processes, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SW_PARITY_ADMIN_TOKEN", "s3cret-admin-tok")
    stable, candidate = services(), services()
    admin_port = free_port()
    plan = write_plan(tmp_path, stable.url, candidate.url,
                      {**IGNORE, "admin": f"127.0.0.1:{admin_port}", "admin_token": "env:SW_PARITY_ADMIN_TOKEN"})
    listen = start_serve(processes, plan, tmp_path)
    httpx.get(listen + "/orders/1").raise_for_status()  # one copy
    with httpx.Client(base_url=f"http://127.0.0.1:{admin_port}") as monitor:
        wait_for(lambda: monitor.get("/healthz").status_code == 200, what="the admin address")
        assert monitor.get("/healthz").json() == {"ok": True}  # no token needed
        assert monitor.get("/api/v1/parity").status_code == 401
        assert monitor.get("/api/v1/parity", headers={"Authorization": "Bearer wrong"}).status_code == 401
        good = {"Authorization": "Bearer s3cret-admin-tok"}
        wait_for(lambda: monitor.get("/api/v1/parity", headers=good).json()["compared"] == 1, what="the copy")
    assert "s3cret-admin-tok" not in (tmp_path / "processes.log").read_text(errors="replace")

    plain = cli("parity", "serve", "--plan", str(plan), "--admin-token", "s3cret-admin-tok")
    assert plain.returncode == 2 and "--admin-token takes env:NAME" in plain.stderr
    monkeypatch.delenv("SW_PARITY_ADMIN_TOKEN")
    unset = cli("parity", "serve", "--plan", str(plan))
    assert unset.returncode == 2 and "parity.admin_token" in unset.stderr and "SW_PARITY_ADMIN_TOKEN" in unset.stderr
