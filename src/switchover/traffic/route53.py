"""The Route 53 router: two weighted records of one name (stable and candidate), via boto3.

Route 53 weights run 0-255; a plan's percentages map onto that scale (``to_route53``) and back
(``from_route53``: the candidate's share of the total, so records edited by hand still read right).
DNS cannot mirror requests: a non-zero mirror is refused; use ``parity replay`` for shadow checks.
Clients cache answers for the TTL (60 s by default), so a weight change takes that long to show.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from switchover.errors import UserError
from switchover.traffic.base import clamp_percent

if TYPE_CHECKING:
    from switchover.plan import Plan

SCALE = 255


def to_route53(weight: int) -> tuple[int, int]:
    """(stable, candidate) Route 53 weights for a candidate percentage."""
    candidate = round(weight * SCALE / 100)
    return SCALE - candidate, candidate


def from_route53(stable: int, candidate: int) -> int:
    """The candidate percentage from two Route 53 weights (both 0 means Route 53 splits evenly)."""
    total = stable + candidate
    return 50 if total == 0 else round(candidate * 100 / total)


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else name + "."


class Route53Router:
    name = "route53"

    def __init__(self, plan: Plan) -> None:
        if plan.traffic.route53 is None:
            raise UserError("traffic.route53: the route53 router needs zone_id, record_name, stable_value, "
                            "candidate_value")
        self.settings = plan.traffic.route53
        self.stable_id = self.settings.stable_id or f"{plan.name}-stable"
        self.candidate_id = self.settings.candidate_id or f"{plan.name}-candidate"
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                import boto3
                from botocore.config import Config
            except ModuleNotFoundError:
                raise UserError("the route53 router needs boto3: pip install 'switchover[aws]'") from None
            self._client = boto3.client(
                "route53", endpoint_url=self.settings.endpoint_url, region_name=self.settings.region,
                config=Config(connect_timeout=5, read_timeout=15, retries={"max_attempts": 3, "mode": "standard"}))
        return self._client

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise UserError(f"route53 {what} (zone {self.settings.zone_id}, {self.settings.record_name}): "
                            f"{error.get('Code', '')}: {error.get('Message', exc)}") from None
        except BotoCoreError as exc:
            raise UserError(f"route53 {what}: {exc}") from None

    def change_batch(self, weight: int) -> dict[str, Any]:
        """The UPSERTs that set ``weight``% on the candidate record (pure, for tests and exports)."""
        stable_w, candidate_w = to_route53(weight)
        changes = []
        for ident, value, w in ((self.stable_id, self.settings.stable_value, stable_w),
                                (self.candidate_id, self.settings.candidate_value, candidate_w)):
            changes.append({"Action": "UPSERT", "ResourceRecordSet": {
                "Name": _fqdn(self.settings.record_name), "Type": self.settings.record_type,
                "SetIdentifier": ident, "Weight": w, "TTL": self.settings.ttl,
                "ResourceRecords": [{"Value": value}]}})
        return {"Comment": f"switchover: candidate weight {weight}%", "Changes": changes}

    def _records(self) -> dict[str, int]:
        answer = self._call("list_resource_record_sets", self.client.list_resource_record_sets,
                            HostedZoneId=self.settings.zone_id, StartRecordName=_fqdn(self.settings.record_name),
                            StartRecordType=self.settings.record_type, MaxItems="20")
        found: dict[str, int] = {}
        for record in answer.get("ResourceRecordSets", []):
            if (record.get("Name") == _fqdn(self.settings.record_name)
                    and record.get("Type") == self.settings.record_type and "SetIdentifier" in record):
                found[str(record["SetIdentifier"])] = int(record.get("Weight", 0))
        return found

    def sync(self, plan: Plan) -> None:
        """Create both weighted records (all users on stable) unless they exist already."""
        records = self._records()
        if self.stable_id in records and self.candidate_id in records:
            return
        self.set_routes(0, 0)

    def set_routes(self, weight: int, mirror_percent: int) -> None:
        clamp_percent(weight, "weight")
        clamp_percent(mirror_percent, "mirror_percent")
        if mirror_percent:
            raise UserError("traffic.driver route53 cannot mirror requests (DNS picks one answer per client); "
                            "set mirror to 0 and use `switchover parity replay` for the shadow check")
        answer = self._call("change_resource_record_sets", self.client.change_resource_record_sets,
                            HostedZoneId=self.settings.zone_id, ChangeBatch=self.change_batch(weight))
        # The weight is in effect on Route 53's servers once the change is INSYNC (usually seconds).
        waiter = self.client.get_waiter("resource_record_sets_changed")
        self._call("waiting for the change to be INSYNC", waiter.wait, Id=answer["ChangeInfo"]["Id"],
                   WaiterConfig={"Delay": 2, "MaxAttempts": 60})

    def get_routes(self) -> tuple[int, int]:
        records = self._records()
        missing = [i for i in (self.stable_id, self.candidate_id) if i not in records]
        if missing:
            raise UserError(f"route53: no weighted record {', '.join(missing)} for {self.settings.record_name} "
                            f"in zone {self.settings.zone_id} (run sync first)")
        return from_route53(records[self.stable_id], records[self.candidate_id]), 0

    def is_online(self) -> bool:
        try:
            self._call("get_hosted_zone", self.client.get_hosted_zone, Id=self.settings.zone_id)
        except UserError:
            return False
        return True
