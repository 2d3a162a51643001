"""`steps:` what the run does, in order. Each step is a one-key mapping: ``- canary: {weight: 10, hold: 5m}``.

The models here are the plan's side of the step registry; ``switchover.engine.steps`` holds what
each kind does (``run``/``on_rollback``). A kind listed in ``STEP_MODELS`` but not implemented by
the engine yet is reported by ``switchover validate``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from switchover.plan.common import Duration, Strict, UrlOrRef


class Canary(Strict):
    kind: Literal["canary"] = Field("canary", exclude=True)
    weight: int = Field(ge=0, le=100)
    hold: Duration = 300.0
    reconcile_every: Duration | None = None


class Pause(Strict):
    """Waits for `switchover promote` (or `duration`, when given, as Argo Rollouts' pause)."""

    kind: Literal["pause"] = Field("pause", exclude=True)
    duration: Duration | None = None


class Hold(Strict):
    kind: Literal["hold"] = Field("hold", exclude=True)
    duration: Duration
    reconcile_every: Duration | None = None


class Manual(Strict):
    kind: Literal["manual"] = Field("manual", exclude=True)
    prompt: str


class Webhook(Strict):
    kind: Literal["webhook"] = Field("webhook", exclude=True)
    url: UrlOrRef
    method: str = "POST"
    timeout: Duration = 30.0
    headers: dict[str, str] = {}
    body: dict[str, Any] | None = None


class Command(Strict):
    kind: Literal["command"] = Field("command", exclude=True)
    argv: list[str] = Field(min_length=1)
    timeout: Duration = 300.0


class Preflight(Strict):
    kind: Literal["preflight"] = Field("preflight", exclude=True)
    skip: list[str] = []


class Shadow(Strict):
    kind: Literal["shadow"] = Field("shadow", exclude=True)
    percent: int = Field(ge=1, le=100)
    hold: Duration = 600.0
    budget: float = Field(0.001, ge=0, le=1)
    min_compared: int = Field(1000, ge=1)
    replay: str | None = Field(None, description="recorded requests, for routers that cannot mirror")
    replay_loop: bool = Field(True, description="replay the file again and again until the hold ends; "
                                                "false: once (e.g. a file of writes with parity.mirror_writes)")
    replay_rate: float | None = Field(None, gt=0, description="requests per second at most sent to each of stable "
                                                              "and the candidate by the replay (default: as fast as "
                                                              "they answer, 8 in flight)")

    @model_validator(mode="after")
    def _loop_needs_a_file(self) -> Shadow:
        for key in ("replay_loop", "replay_rate"):
            if key in self.model_fields_set and self.replay is None:
                raise ValueError(f"{key} applies to a replay: file only; give replay: FILE or remove {key}")
        return self


class Verify(Strict):
    kind: Literal["verify"] = Field("verify", exclude=True)
    checks: bool = True
    rowdiff: bool = False
    tables: list[str] | None = None
    tolerance: float = Field(0.0, ge=0, le=1, description="relative drift accepted (aggregates and rows); 0 = exact")


class Backfill(Strict):
    kind: Literal["backfill"] = Field("backfill", exclude=True)
    tables: list[str] | None = None
    max_lag: Duration = 0.5
    chunk_time: Duration = 0.5


class Cdc(Strict):
    kind: Literal["cdc"] = Field("cdc", exclude=True)
    tables: list[str] | None = None
    max_lag: Duration = 0.5
    sustained: Duration = 0.0
    reverse: bool = False


class DualWrite(Strict):
    kind: Literal["dual_write"] = Field("dual_write", exclude=True)
    enabled: bool = True


class Finalize(Strict):
    kind: Literal["finalize"] = Field("finalize", exclude=True)
    dual_write: bool = False
    keep_cdc: Duration = 86400.0


STEP_MODELS: dict[str, type[Strict]] = {
    "preflight": Preflight,
    "manual": Manual,
    "command": Command,
    "webhook": Webhook,
    "cdc": Cdc,
    "backfill": Backfill,
    "verify": Verify,
    "shadow": Shadow,
    "dual_write": DualWrite,
    "canary": Canary,
    "pause": Pause,
    "hold": Hold,
    "finalize": Finalize,
}


def _step_tag(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        return str(next(iter(value)))
    if isinstance(value, Strict):
        return str(getattr(value, "kind", None))
    return None


StepEntry = Annotated[
    Annotated[dict[Literal["preflight"], Preflight], Tag("preflight")]
    | Annotated[dict[Literal["manual"], Manual], Tag("manual")]
    | Annotated[dict[Literal["command"], Command], Tag("command")]
    | Annotated[dict[Literal["webhook"], Webhook], Tag("webhook")]
    | Annotated[dict[Literal["cdc"], Cdc], Tag("cdc")]
    | Annotated[dict[Literal["backfill"], Backfill], Tag("backfill")]
    | Annotated[dict[Literal["verify"], Verify], Tag("verify")]
    | Annotated[dict[Literal["shadow"], Shadow], Tag("shadow")]
    | Annotated[dict[Literal["dual_write"], DualWrite], Tag("dual_write")]
    | Annotated[dict[Literal["canary"], Canary], Tag("canary")]
    | Annotated[dict[Literal["pause"], Pause], Tag("pause")]
    | Annotated[dict[Literal["hold"], Hold], Tag("hold")]
    | Annotated[dict[Literal["finalize"], Finalize], Tag("finalize")],
    Discriminator(_step_tag, custom_error_type="step_kind",
                  custom_error_message="a step is a one-key mapping naming its kind: " + ", ".join(STEP_MODELS)),
]

AnyStep = Preflight | Manual | Command | Webhook | Cdc | Backfill | Verify | Shadow | DualWrite | Canary | Pause | Hold | Finalize


def default_steps() -> list[dict[str, Any]]:
    """The checklist's progression: 10 -> 25 -> 50 -> 100 with holds."""
    return [{"canary": {"weight": w, "hold": "5m"}} for w in (10, 25, 50, 100)]
