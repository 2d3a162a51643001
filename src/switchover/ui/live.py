"""The live terminal view of a run (rich): step, weight, hold time left, last verdicts with their
numbers, the journal's tail. Without a terminal (CI, pipes) it prints one line per change instead."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from switchover.engine.state import RunState
from switchover.secrets import redact

_STYLE = {"pass": "green", "fail": "bold red", "inconclusive": "yellow"}


def _event_line(event: Any) -> str:
    at = datetime.fromtimestamp(event.at, UTC).strftime("%H:%M:%S")
    p = event.payload
    detail = ""
    if event.kind == "weight_set":
        detail = f"weight {p.get('weight')}% mirror {p.get('mirror')}% ({p.get('reason', '')})"
    elif event.kind == "gate_evaluated":
        detail = f"{p.get('outcome')}: {p.get('reason', '')}"
    elif event.kind in ("step_entered", "step_done"):
        detail = f"step {int(p.get('index', 0)) + 1} {p.get('kind', '')} {p.get('status', '')}"
    elif event.kind == "shadow_started":
        source = str(p.get("source", "mirror"))
        traffic = f"mirror {p.get('percent')}%" if source == "mirror" else source
        detail = f"{traffic}, budget {float(p.get('budget', 0)):.2%}, at least {p.get('min_compared')} compared"
    elif event.kind == "shadow_result":
        detail = f"{p.get('outcome')}: {p.get('summary', '')}"
    elif event.kind == "operator_command":
        detail = str(p.get("command"))
    elif event.kind in ("rollback", "paused", "run_finished"):
        detail = str(p.get("reason") or p.get("outcome") or "")
    return redact(f"{at} {event.kind:<16} {event.actor:<14} {detail}")[:160]


def render(state: RunState, info: dict[str, Any], hold_left: float | None = None) -> Group:
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    step = f"{state.step_index + 1}/{len(state.steps)} {state.step_kind}" if state.step_index >= 0 else "-"
    head.add_row("run", f"{state.run_id}  [{state.status}]")
    head.add_row("step", step)
    head.add_row("weight", f"{state.weight}% to the candidate, mirror {state.mirror}%")
    if hold_left is not None:
        head.add_row("hold left", f"{hold_left:.0f}s")
    if state.paused:
        head.add_row("paused", state.pause_reason)
    canary, stable = info.get("canary"), info.get("stable")
    if canary and stable:
        head.add_row("last window", f"candidate {canary['requests']} req / {canary['errors']} err, "
                                    f"stable {stable['requests']} req / {stable['errors']} err")
    if not info.get("saturation_source"):
        head.add_row("saturation", "no source configured: gate skipped")
    verdicts = Table(title="last verdicts", expand=True, show_edge=False)
    verdicts.add_column("gate")
    verdicts.add_column("outcome")
    verdicts.add_column("why")
    for v in state.last_verdicts:
        outcome = str(v.get("outcome"))
        verdicts.add_row(str(v.get("gate")), Text(outcome, style=_STYLE.get(outcome, "")), str(v.get("reason")))
    streak = " ".join(str(i.outcome)[0].upper() for i in state.intervals[-20:])
    journal = Text("\n".join(_event_line(e) for e in state.tail[-6:]), style="dim")
    return Group(Panel(head, title=f"switchover {state.plan}"), verdicts, Text(f"intervals: {streak}"), journal)


class LiveView:
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self._live: Live | None = None
        self._last_seq = 0
        self._hold_until: float | None = None
        if self.console.is_terminal:
            self._live = Live(console=self.console, refresh_per_second=4, transient=False)
            self._live.start()

    def update(self, state: RunState, info: dict[str, Any]) -> None:
        if self._live is not None:
            hold = info.get("hold_until")
            left = max(0.0, float(hold) - time.time()) if hold else None
            self._live.update(render(state, info, left))
            return
        for event in state.tail:
            if event.seq > self._last_seq:
                self.console.print(_event_line(event), markup=False, highlight=False)
                self._last_seq = event.seq

    def say(self, message: str) -> None:
        self.console.print(f"[bold]>[/bold] {redact(message)}", highlight=False)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
