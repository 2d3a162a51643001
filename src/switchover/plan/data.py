"""`data:` the source and target databases and the tables that move between them."""

from __future__ import annotations

from pydantic import Field

from switchover.plan.common import Duration, SecretRef, Strict


class Database(Strict):
    url: str
    password: SecretRef | None = None


class Table(Strict):
    name: str
    key: list[str] = Field(min_length=1)
    target_name: str | None = None
    columns: list[str] | None = None
    checks: list[str] = ["count"]
    where: str | None = None


class Data(Strict):
    source: Database | str
    target: Database | str
    tables: list[Table] = Field(min_length=1)
    drift_threshold: float = Field(0.001, ge=0, description="reconcile fails beyond this relative drift")
    float_precision: int = Field(6, ge=0)
    chunk_time: Duration = 0.5
    max_lag: Duration = 0.5
