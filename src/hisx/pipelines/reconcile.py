"""Source ↔ warehouse reconciliation per (center, business day), no Dagster.

Both sides compute, per tenant and business day, the row count and an order-independent key
hash ``sum(pk) * 1000003 + sum(pk * pk)`` with portable SQL (the formula
:mod:`hisx.connectors.source.reconcile` uses on SQLite), capped at the row version the ODS
cursor has reached, so rows still in flight are not differences. A day that differs means
lost, extra or hard-deleted rows; the result goes to ``reconcile_log``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa

from hisx.connectors.warehouse import Warehouse
from hisx.pipelines import ods
from hisx.simulator.schema import TABLES, primary_key

DDL = """CREATE TABLE IF NOT EXISTS reconcile_log (
    tenant VARCHAR(40) NOT NULL, table_name VARCHAR(100) NOT NULL,
    business_date VARCHAR(10) NOT NULL, source_rows BIGINT, ods_rows BIGINT,
    source_hash VARCHAR(60), ods_hash VARCHAR(60), checked_at TIMESTAMP NOT NULL)"""

RECONCILED = tuple(t.name for t in TABLES if t.info.get("business_time"))


@dataclass(frozen=True)
class DayDiff:
    tenant: str
    table: str
    business_date: str
    source_rows: int
    ods_rows: int
    source_hash: str
    ods_hash: str


def _counts_sql(table: str, bt: str, pk: str, day: str, window: bool) -> str:
    h = f"CAST(sum({pk}) AS DECIMAL(38, 0)) * 1000003 + CAST(sum({pk} * {pk}) AS DECIMAL(38, 0))"
    span = f' AND "{bt}" >= :lo AND "{bt}" < :hi' if window else ""
    return (f"SELECT {day} AS d, count(*) AS n, {h} AS h "
            f'FROM {table} WHERE org_code = :t AND row_version <= :rv AND "{bt}" IS NOT NULL'
            f"{span} GROUP BY {day}")


def _window(days: tuple[date, date] | None) -> dict:
    if days is None:
        return {}
    return {"lo": datetime.combine(days[0], datetime.min.time()),
            "hi": datetime.combine(days[1] + timedelta(days=1), datetime.min.time())}


def _norm(rows) -> dict[str, tuple[int, str]]:
    return {str(d)[:10]: (int(n), str(int(h))) for d, n, h in rows}


def source_days(engine, table: str, tenant: str, upto: int,
                days: tuple[date, date] | None = None, *, table_sql: str | None = None) -> dict:
    """Per business day (count, key hash) on the source, up to row version ``upto``.

    ``engine`` is a SQLAlchemy engine, or a replica endpoint of a configured source (anything
    with ``dialect`` and ``query(clause)``, e.g. connectors.source.endpoints.OdbcEndpoint);
    ``table_sql`` is the (schema-qualified) source table name when it differs from ``table``.
    """
    t = next(x for x in TABLES if x.name == table)
    bt, pk = t.info["business_time"], primary_key(t)
    dialect = engine.dialect.name if isinstance(engine, sa.Engine) else engine.dialect
    day = f'date("{bt}")' if dialect == "sqlite" else f'CAST("{bt}" AS DATE)'
    sql = _counts_sql(table_sql or table, bt, pk, day, days is not None)
    params = {"t": tenant, "rv": upto, **_window(days)}
    if not isinstance(engine, sa.Engine):
        return _norm(engine.query(sa.text(sql).bindparams(**params)))
    with engine.connect() as c:
        rows = c.execute(sa.text(sql), params)
        return _norm(rows.fetchall())


def ods_days(wh: Warehouse, table: str, tenant: str, upto: int,
             days: tuple[date, date] | None = None) -> dict:
    t = next(x for x in TABLES if x.name == table)
    bt, pk = t.info["business_time"], primary_key(t)
    sql = _counts_sql(ods.ods_name(table), bt, pk, f'CAST("{bt}" AS DATE)', days is not None)
    df = wh.query_df(sql, {"t": tenant, "rv": upto, **_window(days)})
    return _norm(df.itertuples(index=False, name=None))


def reconcile(engine, wh: Warehouse, source: str, tenants: Iterable[str],
              tables: Iterable[str] = RECONCILED, *, days: tuple[date, date] | None = None,
              log: bool = True, table_sql: dict[str, str] | None = None) -> list[DayDiff]:
    """Days whose count or key hash differ between the source and ODS, per tenant × table
    (within ``days``, inclusive, if given)."""
    diffs: list[DayDiff] = []
    for tenant in tenants:
        for table in tables:
            if table not in RECONCILED:
                continue
            upto = ods.get_cursor(wh, source, table, tenant)
            a = source_days(engine, table, tenant, upto, days,
                            table_sql=(table_sql or {}).get(table))
            b = ods_days(wh, table, tenant, upto, days)
            for d in sorted(set(a) | set(b)):
                (sn, sh), (on, oh) = a.get(d, (0, "0")), b.get(d, (0, "0"))
                if (sn, sh) != (on, oh):
                    diffs.append(DayDiff(tenant, table, d, sn, on, sh, oh))
    if log:
        wh.execute(DDL)
        now = datetime.now()
        with wh.transaction():
            for x in diffs:
                wh.execute("INSERT INTO reconcile_log VALUES (:tenant, :table, :business_date, "
                           ":source_rows, :ods_rows, :source_hash, :ods_hash, :now)",
                           {**x.__dict__, "now": now})
    return diffs
