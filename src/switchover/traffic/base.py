"""The Router protocol (DESIGN.md, "Contracts") and the registry that maps `traffic.driver` to an adapter.

Like Flagger's ``pkg/router``: ``sync`` sets up, ``set_routes``/``get_routes`` move and read back
the split, ``is_online`` answers whether the router can be driven at all. Percentages are 0-100;
an adapter maps them to its own scale. A router that cannot mirror refuses a non-zero mirror
with a ``UserError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from switchover.errors import UserError
from switchover.registry import build

if TYPE_CHECKING:
    from switchover.plan import Plan


@runtime_checkable
class Router(Protocol):
    name: str

    def sync(self, plan: Plan) -> None:
        """Set up upstreams, sticky key, configuration files; idempotent."""

    def set_routes(self, weight: int, mirror_percent: int) -> None:
        """Send `weight`% of users to the candidate and mirror `mirror_percent`% of requests to it."""

    def get_routes(self) -> tuple[int, int]:
        """(weight, mirror_percent) read back from the system, as close to the source as it allows."""

    def is_online(self) -> bool:
        """Whether the router answers now."""


# driver name -> "module:Class"; a class is built with (plan).
ROUTERS: dict[str, str] = {
    "proxy": "switchover.traffic.proxy.client:ProxyRouter",
    "nginx": "switchover.traffic.nginx:NginxRouter",
    "istio": "switchover.traffic.istio:IstioRouter",
    "route53": "switchover.traffic.route53:Route53Router",
    "command": "switchover.traffic.command:CommandRouter",
}


def router_for(plan: Plan) -> Router:
    """The Router the plan's `traffic.driver` names."""
    router: Router = build(ROUTERS, plan.traffic.driver, "traffic.driver", plan)
    return router


def clamp_percent(value: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100:
        raise UserError(f"{what} must be an integer from 0 to 100, got {value!r}")
    return value
