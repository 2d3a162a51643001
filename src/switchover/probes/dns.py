"""DNS TTL checks: every hostname the plan names, as each configured resolver answers it.

A weight change through DNS (Route 53) or a cut-over of a name reaches users only when their
resolvers' caches expire, so the TTL bounds how fast a rollback takes effect (60 s by default).
"""

from __future__ import annotations

import dns.exception
import dns.rdatatype
import dns.resolver

from switchover.probes.checks import Check, Status


def parse_resolver(text: str) -> tuple[str, int]:
    """"10.0.0.2", "10.0.0.2:5353", "[::1]:53" -> (address, port)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest.lstrip(":") or 53)
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port)
    return text, 53


def _resolver(spec: str | None, timeout: float) -> dns.resolver.Resolver:
    if spec is None:
        resolver = dns.resolver.Resolver()
    else:
        resolver = dns.resolver.Resolver(configure=False)
        address, port = parse_resolver(spec)
        resolver.nameservers = [address]
        resolver.port = port
    resolver.lifetime = timeout
    resolver.timeout = timeout
    return resolver


def ttl_of(hostname: str, resolver: dns.resolver.Resolver) -> int:
    """The largest TTL on the answer's records (CNAME chain included) for A, else AAAA."""
    last: Exception | None = None
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        try:
            answer = resolver.resolve(hostname, rdtype, search=False)
        except dns.resolver.NoAnswer as exc:
            last = exc
            continue
        rrsets = list(answer.response.answer) or ([answer.rrset] if answer.rrset is not None else [])
        if rrsets:
            return max(int(rrset.ttl) for rrset in rrsets)
    raise last or ValueError(f"no A or AAAA records for {hostname}")


def check_ttls(hostnames: list[str], resolvers: list[str], max_ttl: int, timeout: float = 3.0) -> list[Check]:
    out: list[Check] = []
    for hostname in hostnames:
        specs: list[str | None] = list(resolvers) or [None]
        for spec in specs:
            where = f"@{spec}" if spec else "@system resolver"
            name = f"dns.ttl {hostname} {where}"
            try:
                ttl = ttl_of(hostname, _resolver(spec, timeout))
            except dns.resolver.NXDOMAIN:
                out.append(Check(name, Status.FAIL, f"{hostname} does not exist (NXDOMAIN) {where}"))
                continue
            except (dns.exception.DNSException, OSError, ValueError) as exc:
                out.append(Check(name, Status.FAIL, f"no answer for {hostname} {where}: {exc}"))
                continue
            if ttl > max_ttl:
                out.append(Check(name, Status.FAIL, f"TTL {ttl}s is above the plan's maximum {max_ttl}s "
                                 f"(dns.max_ttl): a rollback would take up to {ttl}s to reach users; lower it first"))
            else:
                out.append(Check(name, Status.PASS, f"TTL {ttl}s <= {max_ttl}s"))
    return out
