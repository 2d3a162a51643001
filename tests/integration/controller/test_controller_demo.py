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
    # The shadow step compared mirrored answers before any user was moved, and found none regressed.
    shadow = re.search(r"shadow_result +controller +pass: 0 of (\d+) compared", done.stdout)
    assert shadow is not None and int(shadow.group(1)) >= 100, done.stdout[:3000]


@pytest.mark.slow
def test_demo_with_a_bad_candidate_rolls_back_in_the_shadow_before_any_user_reaches_it() -> None:
    done = _demo("--bad-candidate")
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "outcome: rolled back" in done.stdout
    # Caught by the shadow step (its 500s against stable's 200s), before any user was sent to it.
    assert "shadow.budget" in done.stdout and "status (status)" in done.stdout
    answered = re.search(r"answered by (.*)", done.stdout)
    assert answered is not None and answered.group(1).startswith("v1:") and "v2" not in answered.group(1)
    assert "failed user requests: 0 (GET 0, POST 0)" in done.stdout
