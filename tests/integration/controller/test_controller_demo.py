"""`switchover demo`, the README's main command, end to end (subprocesses, real sockets)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switchover", "demo", *args], capture_output=True, text=True,
                          timeout=170, check=False)


@pytest.mark.slow
def test_demo_promotes_with_no_failed_user_request() -> None:
    done = _demo()
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "outcome: promoted" in done.stdout
    assert "failed user requests: 0 (GET 0, POST 0)" in done.stdout
    served = re.search(r"requests served: (\d+)", done.stdout)
    assert served is not None and int(served.group(1)) > 1000


@pytest.mark.slow
def test_demo_with_a_bad_candidate_rolls_back_and_says_why() -> None:
    done = _demo("--bad-candidate")
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "outcome: rolled back" in done.stdout
    assert "consecutive failed intervals" in done.stdout
    failed_gets = re.search(r"failed user requests: \d+ \(GET (\d+)", done.stdout)
    assert failed_gets is not None and failed_gets.group(1) == "0"  # GETs retried on stable by the proxy
