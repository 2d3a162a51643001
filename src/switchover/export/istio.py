"""`switchover export istio`: the VirtualService and DestinationRule the istio router applies."""

from __future__ import annotations

from typing import TYPE_CHECKING

from switchover.errors import UserError
from switchover.export._yaml import dump_all
from switchover.traffic.istio import render_destination_rule, render_virtual_service

if TYPE_CHECKING:
    from switchover.plan import Plan


def export_istio(plan: Plan, weight: int = 0, mirror: int = 0) -> str:
    if plan.traffic.istio is None:
        raise UserError(f"{plan.source_path or 'plan'}: traffic.istio: add the istio section (at least host) to export")
    header = f"# Istio objects for switchover plan {plan.name!r}: candidate weight {weight}%, mirror {mirror}%.\n"
    return dump_all([render_virtual_service(plan, weight, mirror), render_destination_rule(plan)], header)
