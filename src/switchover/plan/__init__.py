"""The plan file: pydantic models of every section, loading with file:line:field errors, JSON Schema.

Sections live in modules named for them (``traffic``, ``analysis``, ``data``, ``parity``, ``probes``,
``notify``, ``steps``); this module holds the root model and the loader.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, cast

import yaml
from pydantic import Field, ValidationError, field_validator

from switchover.errors import UserError
from switchover.plan.analysis import Analysis, Metrics, Slo
from switchover.plan.common import Duration, HostPort, SecretRef, Strict
from switchover.plan.data import Data
from switchover.plan.notify import Notifier, Rollback
from switchover.plan.parity import Parity
from switchover.plan.probes import Dns, Journey, Timeouts
from switchover.plan.steps import AnyStep, StepEntry, default_steps
from switchover.plan.traffic import Traffic

__all__ = ["Plan", "Service", "load_plan", "plan_from_dict", "plan_schema"]


class Service(Strict):
    url: str
    ready: str = "/healthz/ready"
    health: str | None = Field(None, description="stable's health path; defaults to `ready`")

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not re.match(r"^https?://[^/]+", value):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value.rstrip("/")


class ControllerApi(Strict):
    api: HostPort = "127.0.0.1:9902"
    token: SecretRef | None = None


class Plan(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    stable: Service
    candidate: Service
    state: str | None = Field(None, description="journal store: sqlite:///PATH (default sqlite:///.switchover/<name>.db) "
                                                "or postgresql://USER@HOST/DB?schema=NAME")
    controller: ControllerApi = ControllerApi()
    timeouts: Timeouts = Timeouts()
    traffic: Traffic = Traffic()
    metrics: Metrics = Metrics()
    slo: Slo = Slo()
    analysis: Analysis = Analysis()
    data: Data | None = None
    parity: Parity = Parity()
    dns: Dns = Dns()
    journeys: list[Journey] = []
    journey_timeout: Duration = 10.0
    steps: list[StepEntry] = Field(default_factory=default_steps, min_length=1, validate_default=True)
    rollback: Rollback = Rollback()
    notify: list[Notifier] = []

    # Where the plan came from, for messages and relative paths (not part of the file).
    source_path: str | None = Field(None, exclude=True)

    @field_validator("state")
    @classmethod
    def _store_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sqlite:///", "postgresql://", "postgres://", "postgresql+")):
            raise ValueError(f"expected sqlite:///PATH or postgresql://..., got {value!r}")
        return value

    def step_list(self) -> list[AnyStep]:
        """The steps as models, in order (each entry is a one-key mapping in the file)."""
        return [cast(AnyStep, next(iter(entry.values()))) for entry in self.steps]

    def state_url(self) -> str:
        return self.state or f"sqlite:///.switchover/{self.name}.db"

    def base_dir(self) -> Path:
        return Path(self.source_path).parent if self.source_path else Path.cwd()


# ---------------------------------------------------------------- loading with line numbers


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping key and sequence item."""


def _construct(node: yaml.Node, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int], loader: _LineLoader) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in out:
                raise UserError(f"{{file}}:{key_node.start_mark.line + 1}: duplicate key {key!r}")
            out[key] = _construct(value_node, (*path, key), lines, loader)
            lines[(*path, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*path, i), lines, loader) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def _parse_yaml(text: str, filename: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    loader = _LineLoader(text)
    lines: dict[tuple[Any, ...], int] = {}
    try:
        node = loader.get_single_node()
        data = _construct(node, (), lines, loader) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{filename}:{mark.line + 1}" if mark else filename
        raise UserError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    except UserError as exc:
        raise UserError(str(exc).replace("{file}", filename)) from None
    finally:
        loader.dispose()
    return data, lines


def _field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _line_for(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _format_errors(exc: ValidationError, filename: str, lines: dict[tuple[Any, ...], int]) -> str:
    out = []
    for err in exc.errors():
        # pydantic puts union tags and 'function-after' markers in loc; keep what names a field.
        raw = [p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))]
        # A step's union tag repeats its kind: steps[1].canary.canary.weight -> steps[1].canary.weight
        loc = tuple(p for i, p in enumerate(raw) if i == 0 or p != raw[i - 1] or isinstance(p, int))
        line = _line_for(loc, lines)
        where = f"{filename}:{line}" if line else filename
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key (typo?)"
        elif err["type"] == "missing":
            message = "required field missing"
        out.append(f"{where}: {_field_path(loc)}: {message}")
    return "\n".join(out)


def plan_from_dict(data: Any, *, filename: str = "<plan>", lines: dict[tuple[Any, ...], int] | None = None) -> Plan:
    if not isinstance(data, dict):
        raise UserError(f"{filename}: a plan is a YAML mapping with at least name, stable and candidate")
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        raise UserError(_format_errors(exc, filename, lines or {})) from None
    return plan.model_copy(update={"source_path": filename})


def load_plan(path: str | Path) -> Plan:
    """Load and validate a plan file. Raises UserError naming file:line: field on any problem."""
    filename = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{filename}: no such plan file") from None
    except OSError as exc:
        raise UserError(f"{filename}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"{filename}: not UTF-8 text") from None
    data, lines = _parse_yaml(text, filename)
    return plan_from_dict(data, filename=filename, lines=lines)


def plan_schema() -> str:
    """JSON Schema of the plan, for editors (yaml-language-server)."""
    schema = Plan.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "switchover plan"
    return json.dumps(schema, indent=2, sort_keys=True)
