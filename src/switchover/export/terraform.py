"""`switchover export terraform-route53`: the two weighted records, in Terraform's JSON syntax
(save as ``switchover.tf.json``), the same records the route53 router upserts."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from switchover.errors import UserError
from switchover.traffic.route53 import to_route53

if TYPE_CHECKING:
    from switchover.plan import Plan


def terraform_route53(plan: Plan, weight: int = 0) -> dict[str, Any]:
    r53 = plan.traffic.route53
    if r53 is None:
        raise UserError(f"{plan.source_path or 'plan'}: traffic.route53: add the route53 section "
                        "(zone_id, record_name, stable_value, candidate_value) to export")
    stable_w, candidate_w = to_route53(weight)
    base = re.sub(r"[^A-Za-z0-9_]", "_", plan.name)
    records = {}
    for role, ident, value, w in (("stable", r53.stable_id or f"{plan.name}-stable", r53.stable_value, stable_w),
                                  ("candidate", r53.candidate_id or f"{plan.name}-candidate", r53.candidate_value,
                                   candidate_w)):
        records[f"{base}_{role}"] = {
            "zone_id": r53.zone_id, "name": r53.record_name, "type": r53.record_type, "ttl": r53.ttl,
            "records": [value], "set_identifier": ident, "weighted_routing_policy": {"weight": w},
        }
    return {"//": f"switchover plan {plan.name}: candidate weight {weight}% (Route 53 weights 0-255)",
            "resource": {"aws_route53_record": records}}


def export_terraform_route53(plan: Plan, weight: int = 0) -> str:
    return json.dumps(terraform_route53(plan, weight), indent=2) + "\n"
