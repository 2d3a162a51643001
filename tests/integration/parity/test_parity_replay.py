"""`parity replay` and `parity report` against real HTTP services (real sockets, the real CLI)."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.integration.parity.conftest import cli, write_plan, write_requests

IGNORE = {"ignore": ["$.generated_at", "$.items[*].etag"]}


def one_percent_total(oid: int, doc: dict[str, Any]) -> dict[str, Any]:
    if oid % 100 == 7:
        doc["total_cents"] += 1
    return doc


def test_one_field_changed_in_one_percent_is_found_at_about_one_percent(services, tmp_path) -> None:
    stable, candidate = services(), services(one_percent_total)
    plan = write_plan(tmp_path, stable.url, candidate.url, IGNORE, steps=[{"shadow": {"percent": 20, "budget": 0.001}}])
    reqs = write_requests(tmp_path, range(1000))
    r = cli("parity", "replay", str(reqs), "--plan", str(plan), "--json")
    assert r.returncode == 1, r.stderr  # 1% is over the 0.1% budget
    report = json.loads(r.stdout)
    assert report["compared"] == 1000
    assert report["regressed"] == 10
    [ep] = report["endpoints"]
    assert ep["endpoint"] == "GET /orders/{id}"
    assert [(f["field"], f["kind"], f["diffs"]) for f in ep["fields"]] == [("$.total_cents", "changed", 10)]
    assert abs(ep["fields"][0]["rate"] - 0.01) < 1e-9
    assert "$.total_cents" in report["summary"]
    # Samples keep both bodies, with the Authorization header redacted.
    sample = report["samples"][0]
    assert dict(sample["request_headers"])["authorization"] == "***"
    assert "s3cr3t-token" not in r.stdout
    assert json.loads(sample["stable"]["body"])["total_cents"] + 1 == json.loads(sample["candidate"]["body"])["total_cents"]
    # The store stays for `parity report`, which reads it and exits 1 too.
    again = cli("parity", "report", "--plan", str(plan), "--json")
    assert again.returncode == 1
    assert json.loads(again.stdout)["regressed"] == 10
    human = cli("parity", "report", "--plan", str(plan))
    assert human.returncode == 1
    assert "GET /orders/{id}" in human.stdout and "$.total_cents" in human.stdout and "fail" in human.stdout
    # A recent sample, with both values: e.g. GET /orders/907: $.total_cents (changed) 1907 -> 1908
    assert re.search(r"e\.g\. GET /orders/(?P<d>\d)07: \$\.total_cents \(changed\) 1(?P=d)07 -> 1(?P=d)08",
                     human.stdout), human.stdout


def test_identical_candidate_passes_and_copies_carry_the_shadow_header(services, tmp_path) -> None:
    stable, candidate = services(), services()
    reqs = write_requests(tmp_path, range(50), extra=['{"method": "POST", "path": "/orders", "body": "{}"}'])
    plan = write_plan(tmp_path, stable.url, candidate.url, IGNORE)
    r = cli("parity", "replay", str(reqs), "--plan", str(plan), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert (report["compared"], report["regressed"], report["outcome"]) == (50, 0, "pass")
    assert report["replay"]["writes_skipped"] == 1
    copies = [s for s in candidate.seen if s[1].startswith("/orders/")]
    assert len(copies) == 50 and all(h.get("x-switchover-shadow") == "1" for _, _, h in copies)
    # The write was not sent to either side: mirror_writes is false.
    assert not [s for s in stable.seen + candidate.seen if s[0] == "POST"]


def test_a_timestamp_that_differs_on_every_call_is_noise_with_a_secondary(services, tmp_path) -> None:
    stable, secondary, candidate = services(), services(), services(one_percent_total)
    parity = {"ignore": ["$.items[*].etag"], "stable_secondary": secondary.url}
    plan = write_plan(tmp_path, stable.url, candidate.url, parity)
    reqs = write_requests(tmp_path, range(300))
    r = cli("parity", "replay", str(reqs), "--plan", str(plan), "--json", "--budget", "0.05")
    assert r.returncode == 0, r.stdout + r.stderr  # 1% regressions within a 5% budget
    report = json.loads(r.stdout)
    fields = {f["field"]: f for f in report["endpoints"][0]["fields"]}
    assert fields["$.generated_at"]["rate"] == 1.0 and fields["$.generated_at"]["noise_rate"] == 1.0
    assert not fields["$.generated_at"]["regression"]
    assert fields["$.total_cents"]["regression"]
    assert report["regressed"] == 3  # ids 7, 107, 207: the timestamp never counts
    assert len([s for s in secondary.seen if s[1].startswith("/orders/")]) == 300
    # Without the secondary the same timestamp is a regression on every answer.
    plan2 = write_plan(tmp_path, stable.url, candidate.url, {"ignore": ["$.items[*].etag"],
                                                             "store": "other-parity.db"})
    r2 = cli("parity", "replay", str(reqs), "--plan", str(plan2), "--json", "--budget", "0.05")
    assert r2.returncode == 1
    assert json.loads(r2.stdout)["regressed"] == 300


def test_status_and_header_mismatches_are_reported(services, tmp_path) -> None:
    stable = services(headers={"cache-control": "max-age=60"})
    broken = services(status=500, headers={"cache-control": "max-age=60"})
    other_header = services(headers={"cache-control": "no-store"})
    reqs = write_requests(tmp_path, range(20))
    for candidate, field, kind, s, c in ((broken, "status", "status", "200", "500"),
                                         (other_header, "header:cache-control", "header", "max-age=60", "no-store")):
        plan = write_plan(tmp_path, stable.url, candidate.url, {**IGNORE, "headers": ["content-type", "cache-control"]})
        (tmp_path / ".switchover").mkdir(exist_ok=True)
        for old in (tmp_path / ".switchover").iterdir():
            old.unlink()
        r = cli("parity", "replay", str(reqs), "--plan", str(plan), "--json")
        assert r.returncode == 1
        report = json.loads(r.stdout)
        [f] = report["endpoints"][0]["fields"]
        assert (f["field"], f["kind"], f["diffs"]) == (field, kind, 20)
        [d] = report["samples"][0]["differences"]
        assert (d["stable"], d["candidate"]) == (s, c)


def test_har_files_are_replayed(services, tmp_path) -> None:
    stable, candidate = services(), services(one_percent_total)
    har = {"log": {"entries": [{"request": {"method": "GET", "url": f"https://shop.example/orders/{i}?x=1",
                                            "headers": [{"name": "Accept", "value": "application/json"}]}}
                               for i in (6, 7, 8)]}}
    f = tmp_path / "session.har"
    f.write_text(json.dumps(har))
    r = cli("parity", "replay", str(f), "--stable", stable.url, "--candidate", candidate.url, "--json")
    assert r.returncode == 1
    report = json.loads(r.stdout)
    assert report["compared"] == 3
    # Without a plan nothing is ignored: the timestamp differs too; total_cents only for id 7.
    fields = {f["field"]: f["diffs"] for f in report["endpoints"][0]["fields"]}
    assert fields["$.total_cents"] == 1 and fields["$.generated_at"] == 3


def test_bad_input_and_unreachable_services_exit_2_with_a_clear_message(services, tmp_path) -> None:
    stable = services()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"method": "GET", "path": "/orders/1"}\n{"method": "GET", "path": "orders/2"}\n')
    r = cli("parity", "replay", str(bad), "--stable", stable.url, "--candidate", stable.url)
    assert r.returncode == 2
    assert f"{bad}:2: path" in r.stderr and "Traceback" not in r.stderr
    good = write_requests(tmp_path, range(3))
    r = cli("parity", "replay", str(good), "--stable", stable.url, "--candidate", "http://127.0.0.1:9")
    assert r.returncode == 2
    assert "candidate http://127.0.0.1:9: unreachable" in r.stderr and "Traceback" not in r.stderr
    busy = stable.url.rsplit(":", 1)[1]
    r = cli("parity", "serve", "--plan", str(write_plan(tmp_path, stable.url, stable.url)), "--listen",
            f"127.0.0.1:{busy}", timeout=30)
    assert r.returncode == 2 and f"cannot listen on 127.0.0.1:{busy}" in r.stderr and "Traceback" not in r.stderr
    r = cli("parity", "report", "--store", str(tmp_path / "none.db"))
    assert r.returncode == 2 and "none.db: no such file" in r.stderr
    plan = tmp_path / "p.yaml"
    plan.write_text(f"name: x\nstable: {{url: '{stable.url}'}}\ncandidate: {{url: '{stable.url}'}}\n"
                    "parity:\n  ignore: [generated_at]\n")
    r = cli("parity", "report", "--plan", str(plan))
    assert r.returncode == 2 and f"{plan}:5: parity.ignore" in r.stderr


def test_noise_learned_by_asking_stable_twice(services, tmp_path) -> None:
    stable, candidate = services(), services(one_percent_total)
    plan = write_plan(tmp_path, stable.url, candidate.url, {"ignore": ["$.items[*].etag"], "learn_noise": 1.0})
    reqs = write_requests(tmp_path, range(200))
    r = cli("parity", "replay", str(reqs), "--plan", str(plan), "--json", "--budget", "0.05")
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout)
    [ep] = report["endpoints"]
    assert ep["noise_compared"] == 200
    fields = {f["field"]: f for f in ep["fields"]}
    assert fields["$.generated_at"]["noise_rate"] == 1.0 and not fields["$.generated_at"]["regression"]
    assert fields["$.total_cents"]["regression"] and report["regressed"] == 2  # ids 7 and 107
    # Stable was asked twice for every read: once for the comparison, once for the noise.
    assert len([s for s in stable.seen if s[1].startswith("/orders/")]) == 400
