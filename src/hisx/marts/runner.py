"""Runs the mart SQL files: one file per mart table, idempotent per tenant × business-day range.

Each ``sql/<mart>.sql`` holds ``CREATE TABLE IF NOT EXISTS`` then a ``DELETE`` of the
(tenant, day range) and an ``INSERT … SELECT`` of the same range, with bound parameters
``:tenant``, ``:date_from`` and ``:date_to`` (inclusive). The runner executes the delete and
insert inside one transaction, so readers never see a half-loaded range and re-runs give the
same contents.
"""

from __future__ import annotations

from datetime import date
from importlib import resources

from hisx.connectors.warehouse import Warehouse, ident, split_statements

#: Marts in load order (later ones may read earlier ones), with the std datasets each reads.
MART_DEPS: dict[str, tuple[str, ...]] = {
    "mart_visits_daily": ("outpatient_visit",),
    "mart_visits_monthly": ("outpatient_visit",),
}
MARTS: tuple[str, ...] = tuple(MART_DEPS)


def mart_sql(name: str) -> str:
    return resources.files("hisx.marts").joinpath("sql", f"{name}.sql").read_text("utf-8")


def _is_ddl(stmt: str) -> bool:
    return stmt.lstrip().upper().startswith(("CREATE", "ALTER"))


def ensure_marts(wh: Warehouse, marts: tuple[str, ...] = MARTS) -> None:
    for name in marts:
        for stmt in split_statements(mart_sql(name)):
            if _is_ddl(stmt):
                wh.execute(stmt)


def load_mart(wh: Warehouse, name: str, tenant: str, date_from: date, date_to: date) -> int:
    """Delete-then-insert one mart for one tenant and day range; returns rows in the range."""
    stmts = [s for s in split_statements(mart_sql(name)) if not _is_ddl(s)]
    params = {"tenant": tenant, "date_from": date_from, "date_to": date_to}
    with wh.transaction():
        for stmt in stmts:
            wh.run_script(stmt, params)
    return int(
        wh.scalar(
            f"SELECT count(*) FROM {ident(name)} WHERE tenant = :tenant AND "
            "period_start BETWEEN :date_from AND :date_to",
            params,
        )
        or 0
    )
