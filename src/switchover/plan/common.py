"""Building blocks shared by every section of the plan."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer

from switchover.durations import format_duration, parse_duration


class Strict(BaseModel):
    """Unknown keys are errors, so that a typo in a plan is caught, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _duration(value: Any) -> float:
    if isinstance(value, str | int | float):
        return parse_duration(value)
    raise ValueError(f"not a duration: {value!r} (write e.g. 500ms, 10s, 5m)")


# Seconds in Python; "10s", "5m" or a number in YAML. Serialised back to the short form.
Duration = Annotated[
    float,
    BeforeValidator(_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]


def _secret_ref(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("env:") or len(value) <= 4:
        raise ValueError("secrets are never written in the plan: use env:NAME")
    return value


# A reference to a secret held in the environment: "env:NAME". Resolve with switchover.secrets.resolve.
SecretRef = Annotated[str, BeforeValidator(_secret_ref)]


def _url_or_ref(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a URL or env:NAME")
    return value


# A URL that may also be given as env:NAME (webhook URLs carry tokens).
UrlOrRef = Annotated[str, BeforeValidator(_url_or_ref)]


def _host_port(value: Any) -> str:
    if not isinstance(value, str) or ":" not in value:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:9901")
    _host, _, port = value.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad port in {value!r}")
    return value


HostPort = Annotated[str, BeforeValidator(_host_port)]
