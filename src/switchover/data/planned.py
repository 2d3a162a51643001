"""The plan's ``data:`` section as verifier inputs: the two database URLs and one TableSpec per table."""

from __future__ import annotations

from collections.abc import Sequence

from switchover.data.rowdiff import TableSpec
from switchover.data.urls import DbUrl, parse_db_url
from switchover.errors import UserError
from switchover.plan import Plan
from switchover.plan.data import Data, Database, Table


def plan_data(plan: Plan) -> Data:
    if plan.data is None:
        where = plan.source_path or "the plan"
        raise UserError(f"{where}: no `data:` section (source, target, tables) to verify")
    return plan.data


def database_url(db: Database | str, where: str) -> DbUrl:
    if isinstance(db, str):
        return parse_db_url(db, where=where)
    return parse_db_url(db.url, db.password, where=where)


def databases(data: Data, where: str = "data") -> tuple[DbUrl, DbUrl]:
    return database_url(data.source, f"{where}.source"), database_url(data.target, f"{where}.target")


def table_spec(table: Table) -> TableSpec:
    return TableSpec(name=table.name, key=tuple(table.key), target_name=table.target_name,
                     columns=tuple(table.columns) if table.columns is not None else None, where=table.where)


def select_tables(data: Data, names: Sequence[str] | None, where: str = "data.tables") -> list[Table]:
    """The plan's tables, or those named (UserError naming an unknown one)."""
    if not names:
        return list(data.tables)
    known = {t.name: t for t in data.tables}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"{where}: table(s) {', '.join(unknown)} not in the plan's data.tables "
                        f"({', '.join(known)})")
    return [known[n] for n in names]
