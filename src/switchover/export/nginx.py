"""`switchover export nginx`: the file the nginx router writes, to include inside ``http {}``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from switchover.plan.traffic import NginxRouter as NginxSettings
from switchover.traffic.nginx import render_config

if TYPE_CHECKING:
    from switchover.plan import Plan


def export_nginx(plan: Plan, weight: int = 0, mirror: int = 0) -> str:
    return render_config(plan, plan.traffic.nginx or NginxSettings(), weight, mirror)
