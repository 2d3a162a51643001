"""The nginx router: one rendered file that the user's nginx.conf includes inside ``http {}``.

The file holds two upstreams, a ``split_clients`` on the sticky key (the candidate's share is listed
first, so raising the weight only ever moves users from stable to candidate: stickiness is
monotone), a second ``split_clients`` that samples requests for ``mirror``, and a ``server`` that
proxies by the split. A change is written atomically, checked with ``nginx -t`` (the previous file
is put back when the check fails) and applied with a graceful reload (old workers finish their
requests). ``get_routes`` reads the weight back from the file nginx loaded.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from switchover.errors import UserError
from switchover.traffic.base import clamp_percent

if TYPE_CHECKING:
    from switchover.plan import Plan
    from switchover.plan.traffic import NginxRouter as NginxSettings

HEADER = "# Managed by switchover: rewritten on every weight change. Do not edit."
_WEIGHT_LINE = re.compile(r"^# switchover: plan=(?P<plan>\S+) weight=(?P<weight>\d+) mirror=(?P<mirror>\d+)$", re.M)
_SPLIT = re.compile(r"split_clients\s+\S+\s+\$(?P<var>\w+)\s*\{(?P<body>[^}]*)\}", re.S)


@dataclass(frozen=True)
class NginxRoutes:
    weight: int
    mirror_percent: int


def _ident(plan_name: str) -> str:
    return "switchover_" + re.sub(r"[^A-Za-z0-9_]", "_", plan_name)


def _hostport(url: str) -> str:
    parts = urlsplit(url)
    if not parts.hostname:
        raise UserError(f"not an http URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{port}"


def _sticky_source(plan: Plan) -> str:
    sticky = plan.traffic.sticky
    if sticky is None:
        return ""
    if sticky.header:
        return "$http_" + re.sub(r"[^a-z0-9]", "_", sticky.header.lower())
    return "$cookie_" + str(sticky.cookie)


def _percent(value: int) -> str:
    return f"{value}%"


def mirror_target(plan: Plan, settings: NginxSettings) -> str | None:
    """Where copies go: ``traffic.nginx.mirror_url``, else ``parity.listen`` (`switchover parity serve`)
    when the plan has one."""
    if settings.mirror_url:
        return settings.mirror_url
    listen = getattr(plan.parity, "listen", None)
    return f"http://{listen}" if isinstance(listen, str) and listen else None


def render_config(plan: Plan, settings: NginxSettings, weight: int, mirror_percent: int) -> str:
    """The whole file for (weight, mirror_percent). Pure: the same inputs give the same bytes."""
    clamp_percent(weight, "weight")
    clamp_percent(mirror_percent, "mirror_percent")
    mirror_url = mirror_target(plan, settings)
    if mirror_percent and not mirror_url:
        raise UserError("traffic.nginx.mirror_url: set where mirrored copies go "
                        "(the address of `switchover parity serve`) before mirroring with nginx")
    ident = _ident(plan.name)
    listen = settings.listen or plan.traffic.listen
    key = _sticky_source(plan)
    scheme = "https" if plan.candidate.url.startswith("https") else "http"
    lines = [HEADER, f"# switchover: plan={plan.name} weight={weight} mirror={mirror_percent}", ""]
    retry = plan.traffic.retry.enabled
    ejection = plan.traffic.ejection
    for role, url in (("stable", plan.stable.url), ("candidate", plan.candidate.url)):
        lines.append(f"upstream {ident}_{role} {{")
        if role == "candidate" and retry:
            # Passive ejection (max_fails/fail_timeout) and, as a backup, stable: an idempotent request
            # that fails on the candidate is answered by stable (traffic.retry), as the proxy does.
            lines += [f"    server {_hostport(url)} max_fails={ejection.consecutive_failures} "
                      f"fail_timeout={max(1, round(ejection.base_time))}s;",
                      f"    server {_hostport(plan.stable.url)} backup;"]
        else:
            lines.append(f"    server {_hostport(url)};")
        if settings.keepalive:
            lines.append(f"    keepalive {settings.keepalive};")
        lines += ["}", ""]
    # Requests without the sticky key are spread by request id, so they still follow the weight.
    if key:
        lines += [f"map {key} ${ident}_key {{", "    \"\" $request_id;", f"    default {key};", "}", ""]
    else:
        lines += [f"map $request_id ${ident}_key {{", "    default $request_id;", "}", ""]
    lines.append(f"split_clients \"${{{ident}_key}}\" ${ident}_upstream {{")
    if weight == 100:
        lines.append(f"    * {ident}_candidate;")
    else:
        if weight:
            lines.append(f"    {_percent(weight)} {ident}_candidate;")
        lines.append(f"    * {ident}_stable;")
    lines += ["}", ""]
    lines.append(f"split_clients \"${{request_id}}\" ${ident}_mirror {{")
    if mirror_percent == 100:
        lines.append("    * 1;")
    else:
        if mirror_percent:
            lines.append(f"    {_percent(mirror_percent)} 1;")
        lines.append("    * \"\";")
    lines += ["}", ""]
    lines += [
        "server {",
        f"    listen {listen};",
        f"    server_name {settings.server_name};",
        "    location / {",
    ]
    if mirror_url and mirror_percent:
        # Only while mirroring: each `mirror` costs a subrequest, even one that ends at once.
        lines += [f"        mirror /_{ident}_mirror;", "        mirror_request_body on;"]
    lines += [
        f"        proxy_pass {scheme}://${ident}_upstream;",
        "        proxy_http_version 1.1;",
        "        proxy_set_header Connection \"\";",
        "        proxy_set_header Host $host;",
        "        proxy_set_header X-Request-Id $request_id;",
    ]
    if retry:
        # nginx never retries non-idempotent methods (POST, PATCH) unless told to: writes are not repeated.
        lines += ["        proxy_next_upstream error timeout http_502 http_503 http_504;",
                  "        proxy_next_upstream_tries 2;"]
    lines.append("    }")
    if mirror_url:
        mirror = mirror_url.rstrip("/")
        lines += [
            f"    location = /_{ident}_mirror {{",
            "        internal;",
            # Only the sampled share of requests is copied; the rest end here without leaving nginx.
            f"        if (${ident}_mirror = \"\") {{ return 204; }}",
            f"        proxy_pass {mirror}$request_uri;",
            "        proxy_set_header X-Switchover-Mirror 1;",
            "        proxy_set_header Host $host;",
            "        proxy_connect_timeout 1s;",
            "        proxy_read_timeout 5s;",
            "    }",
        ]
    lines += ["}", ""]
    return "\n".join(lines)


def parse_routes(text: str, plan_name: str | None = None) -> NginxRoutes:
    """(weight, mirror_percent) from a rendered file: from the split_clients blocks nginx reads,
    cross-checked with the header line. UserError if the file is not one switchover wrote."""
    ident = _ident(plan_name) if plan_name else None
    shares: dict[str, int] = {}
    for match in _SPLIT.finditer(text):
        var = match.group("var")
        if ident and not var.startswith(ident):
            continue
        share = 0
        for entry in match.group("body").split(";"):
            entry = entry.strip()
            if not entry:
                continue
            pct, _, target = entry.partition(" ")
            target = target.strip()
            is_candidate = target.endswith("_candidate") or target == "1"
            if pct == "*":
                if is_candidate:
                    share = 100
                break
            if is_candidate:
                share += round(float(pct.rstrip("%")))
        shares["mirror" if var.endswith("_mirror") else "weight"] = share
    if "weight" not in shares or "mirror" not in shares:
        raise UserError("the nginx file has no switchover split_clients blocks (was it written by switchover?)")
    header = _WEIGHT_LINE.search(text)
    if header and (int(header["weight"]), int(header["mirror"])) != (shares["weight"], shares["mirror"]):
        raise UserError("the nginx file was edited by hand: its header and its split_clients disagree")
    return NginxRoutes(shares["weight"], shares["mirror"])


def _run(argv: list[str], timeout: float, what: str) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise UserError(f"{what}: command not found: {argv[0]}") from None
    except subprocess.TimeoutExpired:
        raise UserError(f"{what}: {' '.join(argv)} did not finish within {timeout:g}s") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise UserError(f"{what}: {' '.join(argv)} exited {done.returncode}: {' / '.join(detail[-3:])}")


class NginxRouter:
    name = "nginx"

    def __init__(self, plan: Plan) -> None:
        if plan.traffic.nginx is None:
            raise UserError("traffic.nginx: the nginx router needs its section (config_path, reload, test)")
        self.plan = plan
        self.settings = plan.traffic.nginx
        path = Path(self.settings.config_path)
        self.path = path if path.is_absolute() else plan.base_dir() / path

    def sync(self, plan: Plan) -> None:
        """Write the file at the current weight (stable only when there is none yet)."""
        self.plan = plan
        current = self._read() if self.path.exists() else NginxRoutes(0, 0)
        self._apply(current.weight, current.mirror_percent)

    def set_routes(self, weight: int, mirror_percent: int) -> None:
        self._apply(clamp_percent(weight, "weight"), clamp_percent(mirror_percent, "mirror_percent"))

    def get_routes(self) -> tuple[int, int]:
        routes = self._read()
        return routes.weight, routes.mirror_percent

    def is_online(self) -> bool:
        """nginx accepts the configuration (``nginx -t``) and the rendered server accepts connections
        (once the file exists: before the first ``sync`` nothing listens there yet)."""
        try:
            _run(self.settings.test, self.settings.timeout, "nginx -t")
        except UserError:
            return False
        if not self.path.exists():
            return True
        host, _, port = (self.settings.listen or self.plan.traffic.listen).rpartition(":")
        host = host.strip("[]")
        if host in ("", "0.0.0.0", "*", "::"):
            host = "127.0.0.1"
        try:
            socket.create_connection((host, int(port)), timeout=3).close()
        except (OSError, ValueError):
            return False
        return True

    def _read(self) -> NginxRoutes:
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UserError(f"traffic.nginx.config_path: cannot read {self.path}: {exc.strerror}") from None
        return parse_routes(text, self.plan.name)

    def _apply(self, weight: int, mirror_percent: int) -> None:
        text = render_config(self.plan, self.settings, weight, mirror_percent)
        previous = self.path.read_bytes() if self.path.exists() else None
        _atomic_write(self.path, text.encode())
        try:
            _run(self.settings.test, self.settings.timeout, "nginx configuration check")
            _run(self.settings.reload, self.settings.timeout, "nginx reload")
        except UserError:
            # nginx keeps serving the old configuration; put the old file back so that the file,
            # which get_routes reads, says what nginx does.
            if previous is None:
                self.path.unlink(missing_ok=True)
            else:
                _atomic_write(self.path, previous)
            raise


def _atomic_write(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".switchover-", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        raise UserError(f"traffic.nginx.config_path: cannot write {path}: {exc.strerror}") from None
