"""Hard-delete detection, source side: per (tenant, business day) the row count and an
order-independent hash of the primary keys; the warehouse compares with its own copy and
re-reads the days that differ. Soft deletes travel as ``is_deleted`` in the normal rows."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.dialects import mssql

from hisx.simulator.schema import primary_key


def _pk_hash(pk: sa.ColumnElement, dialect: str) -> sa.ColumnElement:
    if dialect == "postgresql":  # 64-bit hash of the key text, summed exactly (numeric)
        return sa.func.sum(sa.cast(sa.func.hashtextextended(sa.cast(pk, sa.Text), 0), sa.Numeric(38, 0)))
    if dialect == "mssql":  # first 8 bytes of SHA-256 of the key text, summed as DECIMAL(38,0)
        # the algorithm is a literal, not a bound parameter (HASHBYTES' documented form)
        h = sa.func.HASHBYTES(sa.literal_column("'SHA2_256'"), sa.cast(pk, sa.String(20)))
        return sa.func.sum(sa.cast(sa.cast(sa.cast(h, mssql.BINARY(8)), sa.BigInteger), sa.Numeric(38, 0)))
    if dialect == "sqlite":  # no hash function: sum of keys and sum of squares, exact integers
        return sa.func.sum(pk) * 1_000_003 + sa.func.sum(pk * pk)
    raise ValueError(f"unsupported dialect {dialect!r}")


def reconcile_select(table: sa.Table, dialect: str, tenant: str | None,
                     day_from: dt.date, day_to: dt.date) -> sa.Select:
    """Per (org_code, business_date) count and PK hash for ``day_from <= day <= day_to``."""
    bt_name = table.info.get("business_time")
    if not bt_name:
        raise ValueError(f"table {table.name!r} has no business-time column to reconcile by")
    bt = table.c[bt_name]
    day = sa.cast(bt, sa.Date).label("business_date")
    pk = table.c[primary_key(table)]
    start = dt.datetime.combine(day_from, dt.time())
    end = dt.datetime.combine(day_to + dt.timedelta(days=1), dt.time())
    cond = [bt >= sa.bindparam("day_from", start, type_=sa.DateTime),
            bt < sa.bindparam("day_to", end, type_=sa.DateTime)]
    if dialect == "sqlite":
        day = sa.func.date(bt).label("business_date")
    elif dialect == "mssql":  # explicit: an offline mssql dialect would CAST(... AS DATETIME)
        day = sa.func.CONVERT(sa.literal_column("DATE"), bt).label("business_date")
    if tenant is not None:
        cond.insert(0, table.c.org_code == sa.bindparam("tenant", tenant, type_=sa.String))
    return (sa.select(table.c.org_code, day, sa.func.count().label("n"),
                      _pk_hash(pk, dialect).label("pk_hash"))
            .where(*cond).group_by(table.c.org_code, day).order_by(table.c.org_code, day))


def reconcile_counts(runner, table: sa.Table, tenant: str | None, day_from: dt.date,
                     day_to: dt.date) -> list[dict]:
    """Run :func:`reconcile_select` on an OdbcEndpoint or a SQLAlchemy engine."""
    if isinstance(runner, sa.Engine):
        with runner.connect() as c:
            rows = c.execute(reconcile_select(table, runner.dialect.name, tenant, day_from, day_to)).all()
    else:
        rows = runner.query(reconcile_select(table, runner.dialect, tenant, day_from, day_to))
    return [{"org_code": r[0], "business_date": str(r[1])[:10], "n": int(r[2]),
             "pk_hash": str(int(r[3]))} for r in rows]
