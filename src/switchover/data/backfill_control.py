"""The backfill's decisions, as pure functions: how big the next chunk is, whether to throttle, the ETA.

Chunk sizing follows pt-online-schema-change's ``--chunk-time``: scale the next chunk by how far the
last one was from the target time, damped so that one slow chunk (a checkpoint, a noisy neighbour)
does not collapse the rate. Throttling follows gh-ost: an operator pause, a flag file, a throttle
query returning > 0, or replication/CDC lag above the limit each hold the copy; the first reason wins.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_CHUNK = 100
MAX_CHUNK = 50_000


def next_chunk_size(current: int, elapsed: float, target: float) -> int:
    """Rows for the next chunk so that it takes about ``target`` seconds (at most x2 / at least x0.5)."""
    factor = 2.0 if elapsed <= 0 else max(0.5, min(2.0, target / elapsed))
    return max(MIN_CHUNK, min(MAX_CHUNK, int(current * factor)))


@dataclass(frozen=True)
class ThrottleInputs:
    paused: bool = False
    flag_file: str | None = None  # the path when it exists
    query_value: float | None = None  # the throttle query's answer
    lag_ms: float | None = None  # replication / CDC lag, when known
    max_lag_ms: float = 500.0


def throttle_reason(inputs: ThrottleInputs) -> str | None:
    """Why the copy must wait now, or None to go on."""
    if inputs.paused:
        return "paused by operator (switchover data backfill --resume to continue)"
    if inputs.flag_file is not None:
        return f"throttle file {inputs.flag_file} exists"
    if inputs.query_value is not None and inputs.query_value > 0:
        return f"throttle query returned {inputs.query_value:g}"
    if inputs.lag_ms is not None and inputs.lag_ms > inputs.max_lag_ms:
        return f"lag {inputs.lag_ms:.0f} ms > max {inputs.max_lag_ms:.0f} ms"
    return None


def eta_seconds(copied: int, total_estimate: int | None, rows_per_s: float) -> float | None:
    if total_estimate is None or rows_per_s <= 0:
        return None
    return max(0.0, (total_estimate - copied) / rows_per_s)


@dataclass(frozen=True)
class BackfillStatus:
    """What ``--status`` shows and the checkpoint holds (JSON-able)."""

    table: str
    state: str  # running | throttled | paused | done | failed
    rows: int
    chunks: int
    last_key: list[str] | None
    chunk_size: int
    rows_per_s: float
    throttle: str | None
    lag_ms: float | None
    total_estimate: int | None
    updated_at: float
    started_at: float
    pid: int

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)

    @staticmethod
    def from_json(data: dict[str, object]) -> BackfillStatus:
        fields = BackfillStatus.__dataclass_fields__
        return BackfillStatus(**{k: v for k, v in data.items() if k in fields})  # type: ignore[arg-type]
