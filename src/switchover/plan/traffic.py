"""`traffic:` the router that moves users (built-in proxy by default) and its settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from switchover.plan.common import Duration, HostPort, SecretRef, Strict


class Sticky(Strict):
    """Sticky routing key: a user keeps their side while the weight is unchanged, and moves monotonically."""

    header: str | None = None
    cookie: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Sticky:
        if (self.header is None) == (self.cookie is None):
            raise ValueError("sticky takes exactly one of header or cookie")
        return self


class Retry(Strict):
    """Retry of idempotent requests that failed on the candidate, on stable (Envoy's previous_hosts)."""

    enabled: bool = True
    budget: float = Field(0.2, ge=0, le=1, description="retries in flight stay under this share of requests in "
                          "flight (at least 3 at once), as Envoy's retry budget")


class Ejection(Strict):
    """Passive outlier ejection of the candidate: after this many failures in a row its users are served by
    stable for base_time (times the ejections in a row, up to 10x), then one request probes it."""

    consecutive_failures: int = Field(5, ge=1)
    base_time: Duration = 30.0


class ProxyLimits(Strict):
    connect_timeout: Duration = 2.0
    response_timeout: Duration = 30.0
    header_timeout: Duration = 10.0
    max_header_bytes: int = 65536
    max_body_bytes: int = 100 * 1024 * 1024 * 1024
    body_copy_cap: int = Field(64 * 1024, description="bodies up to this size are copied for mirror and retry")
    max_in_flight: int = Field(1024, ge=1, description="per upstream; beyond it 503 with Retry-After")
    max_mirrors_in_flight: int = Field(64, ge=1)
    mirror_batch_wait: Duration = Field(0.002, ge=0, le=1,
                                        description="copies wait up to this long to leave together, pipelined on one "
                                                    "connection (up to 16); 0: only those of one turn of the event loop")


class NginxRouter(Strict):
    """`traffic.nginx`: switchover renders one file (upstreams, `split_clients`, a `server` with `mirror`)
    that the user's nginx.conf includes inside `http {}`, checks it with `test`, then runs `reload`."""

    config_path: str = "/etc/nginx/conf.d/switchover.conf"
    reload: list[str] = Field(["nginx", "-s", "reload"], min_length=1, description="argv, no shell")
    test: list[str] = Field(["nginx", "-t"], min_length=1, description="argv, no shell")
    listen: str | None = Field(None, description="the rendered server's listen; default traffic.listen")
    server_name: str = "_"
    mirror_url: str | None = Field(None, description="where mirrored copies go (`switchover parity serve`); "
                                   "default parity.listen when the plan has it")
    keepalive: int = Field(32, ge=0, description="idle upstream connections kept per worker")
    timeout: Duration = Field(30.0, description="for the test and reload commands")


class IstioRouter(Strict):
    """`traffic.istio`: a VirtualService and a DestinationRule, applied with server-side apply."""

    namespace: str = "default"
    host: str = Field(description="the Kubernetes service both subsets sit behind, e.g. orders")
    stable_subset: str = "stable"
    candidate_subset: str = "candidate"
    stable_labels: dict[str, str] = {"version": "v1"}
    candidate_labels: dict[str, str] = {"version": "v2"}
    virtual_service: str | None = Field(None, description="default: the plan's name")
    destination_rule: str | None = Field(None, description="default: the plan's name")
    gateways: list[str] = []
    hosts: list[str] = Field([], description="VirtualService hosts; default [host]")
    mirror_host: str | None = Field(None, description="mirror to this host (parity serve); default the candidate subset")
    api_version: str = "v1beta1"
    kubeconfig: str | None = None
    context: str | None = None


class Route53Router(Strict):
    """`traffic.route53`: two weighted records (stable, candidate) of the same name."""

    zone_id: str
    record_name: str
    record_type: str = "A"
    ttl: int = Field(60, ge=0)
    stable_value: str
    candidate_value: str
    stable_id: str | None = Field(None, description="set_identifier; default <plan>-stable")
    candidate_id: str | None = Field(None, description="set_identifier; default <plan>-candidate")
    endpoint_url: str | None = None
    region: str = "us-east-1"


class CommandRouter(Strict):
    set_weight: list[str] = Field(min_length=1, description="argv; {weight} and {mirror} are substituted")
    get_weight: list[str] = Field(min_length=1, description="argv; prints the candidate weight [and mirror]")
    online: list[str] | None = Field(None, description="argv; exit 0 when the router answers; default get_weight")
    timeout: Duration = 30.0


class Traffic(Strict):
    driver: Literal["proxy", "nginx", "istio", "route53", "command"] = "proxy"
    listen: HostPort = "127.0.0.1:8080"
    admin: HostPort = "127.0.0.1:9901"
    admin_token: SecretRef | None = None
    sticky: Sticky | None = None
    workers: int = Field(1, ge=1)
    state_file: str | None = None
    retry: Retry = Retry()
    ejection: Ejection = Ejection()
    limits: ProxyLimits = ProxyLimits()
    nginx: NginxRouter | None = None
    istio: IstioRouter | None = None
    route53: Route53Router | None = None
    command: CommandRouter | None = None
