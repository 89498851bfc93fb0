"""Hard deletes: rows gone from the source are removed from ODS, std and quarantine (no Dagster).

Incremental extraction follows row versions, so a row deleted at the source is never seen
again; only reconciliation notices it (a business day with more rows in ODS than at the
source). For each differing day, the ODS keys of that day that no longer exist at the
source *in any version* (so a row updated after the cursor, or moved to another day, is not
a delete) are removed, in one warehouse transaction per center and table, from:

* ODS (``ods_<table>``),
* every standardized dataset read from that table (``std_<dataset>``) and its quarantine,
* and their business days are marked dirty (``mart_dirty``) so the marts re-load them.

``delete_log`` records what went, per source × center × table × business day. Running it
again finds nothing (idempotent). The feed ledger keeps the messages already published for
the removed rows: a tombstone message would need a delete kind in the feed contracts.
:func:`prune_orphans` removes std / quarantine rows whose ODS row is gone (after a center's
ODS was rebuilt from the source, :mod:`hisx.pipelines.backfill`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from hisx.connectors.warehouse import Warehouse
from hisx.marts import runner as marts
from hisx.pipelines import feed_render, ods, reconcile
from hisx.pipelines.flow import ensure_dirty
from hisx.pipelines.std_tables import QUARANTINE_DDL, std_table
from hisx.simulator.schema import TABLES, primary_key

DDL = """CREATE TABLE IF NOT EXISTS delete_log (
    source VARCHAR(100) NOT NULL, tenant VARCHAR(40) NOT NULL,
    table_name VARCHAR(100) NOT NULL, business_date DATE,
    ods_rows BIGINT NOT NULL, std_rows BIGINT NOT NULL, quarantine_rows BIGINT NOT NULL,
    removed_at TIMESTAMP NOT NULL)"""
IN_CHUNK = 500


@dataclass(frozen=True)
class Removed:
    """What one propagation removed for a center × table × business day."""

    tenant: str
    table: str
    business_date: date | None
    ods_rows: int
    std_rows: int
    quarantine_rows: int


def _datasets(table: str) -> list[tuple[str, str]]:
    """(dataset, business-time column) of the std datasets read from ``table``."""
    from hisx.pipelines.standardize import DATASETS

    return [(d, s.business_time) for d, s in DATASETS.items() if s.source_table == table]


def _table(name: str) -> sa.Table:
    return next(t for t in TABLES if t.name == name)


def existing_keys(reader, table: str, tenant: str, keys: Iterable[int], *,
                  table_sql: sa.Table | None = None) -> set[int]:
    """Which of ``keys`` still exist at the source for ``tenant`` (any row version).
    ``reader``: a SQLAlchemy engine or a replica endpoint (``query(statement)``)."""
    t = table_sql if table_sql is not None else _table(table)
    pk = t.c[primary_key(_table(table))]
    keys = sorted({int(k) for k in keys})
    found: set[int] = set()
    conn = reader.connect() if isinstance(reader, sa.Engine) else None
    try:
        for i in range(0, len(keys), IN_CHUNK):
            stmt = sa.select(pk).where(t.c.org_code == tenant, pk.in_(keys[i:i + IN_CHUNK]))
            rows = conn.execute(stmt).fetchall() if conn is not None else reader.query(stmt)
            found.update(int(r[0]) for r in rows)
    finally:
        if conn is not None:
            conn.close()
    return found


def find_deleted(reader, wh: Warehouse, source: str, diffs: Iterable[reconcile.DayDiff], *,
                 tables_sql: dict[str, sa.Table] | None = None) -> dict[tuple[str, str], list]:
    """{(tenant, table): ODS keys gone from the source} for the differing days ``diffs``."""
    out: dict[tuple[str, str], list[int]] = {}
    for d in diffs:
        if d.ods_rows == 0:
            continue  # rows missing from ODS: the extraction's business, not a delete
        t = _table(d.table)
        bt, pk = t.info["business_time"], primary_key(t)
        upto = ods.get_cursor(wh, source, d.table, d.tenant)
        lo = datetime.fromisoformat(d.business_date)
        ods_keys = [int(k) for k in wh.query_df(
            f'SELECT {pk} AS k FROM {ods.ods_name(d.table)} WHERE org_code = :t AND '
            f'row_version <= :rv AND "{bt}" >= :lo AND "{bt}" < :hi',
            {"t": d.tenant, "rv": upto, "lo": lo, "hi": lo + pd.Timedelta(days=1)})["k"]]
        alive = existing_keys(reader, d.table, d.tenant, ods_keys,
                              table_sql=(tables_sql or {}).get(d.table))
        gone = sorted(set(ods_keys) - alive)
        if gone:
            out.setdefault((d.tenant, d.table), []).extend(gone)
    return out


def _stage(wh: Warehouse, keys: Iterable[int]) -> None:
    wh.execute("DROP TABLE IF EXISTS stage_deleted")
    wh.execute("CREATE TEMPORARY TABLE stage_deleted (source_key BIGINT)")
    wh.load_arrow("stage_deleted", pa.table({"source_key": pa.array(sorted(set(keys)),
                                                                     pa.int64())}))


def _dirty(wh: Warehouse, dataset: str, tenant: str, days: Iterable) -> None:
    days = sorted({pd.Timestamp(d).date() for d in days if pd.notna(d)})
    if days:
        wh.load_arrow("mart_dirty", pa.table({
            "dataset": [dataset] * len(days), "tenant": [tenant] * len(days),
            "business_date": pa.array(days, pa.date32())}))


def _quarantine_days(q: pd.DataFrame, bt: str) -> list:
    """Business days of quarantined rows, from their original row (as the DQ marts do)."""
    out = []
    for raw in q["original"]:
        try:
            out.append(pd.to_datetime(json.loads(raw).get(bt), errors="coerce"))
        except (TypeError, ValueError):
            continue
    return out


def _exists(wh: Warehouse, table: str) -> bool:
    return bool(wh.scalar("SELECT count(*) FROM information_schema.tables WHERE table_name = :n",
                          {"n": table.strip('"')}))


def _count_days(days: Iterable, into: dict) -> None:
    for d in days:
        if pd.notna(d):
            day = pd.Timestamp(d).date()
            into[day] = into.get(day, 0) + 1


def _remove_std(wh: Warehouse, tenant: str, table: str) -> tuple[dict, dict]:
    """Remove the staged keys from the std datasets of ``table`` and their quarantine; mark
    their days dirty. Returns the removed rows per business day: (std, quarantine)."""
    std_days: dict = {}
    q_days: dict = {}
    for dataset, bt in _datasets(table):
        std = std_table(dataset)
        if not _exists(wh, std):
            continue
        key = marts.DIRTY_KEYS.get(dataset)
        gone = wh.query_df(
            f"SELECT business_date{', ' + key if key else ''} FROM {std} WHERE tenant = :t "
            "AND source_key IN (SELECT source_key FROM stage_deleted)", {"t": tenant})
        days = list(gone["business_date"])
        if key:
            marts.mark_dirty_keys(wh, dataset, pd.Series([tenant] * len(gone)), gone[key])
        qdays = _quarantine_days(wh.query_df(
            "SELECT original FROM quarantine WHERE dataset = :d AND tenant = :t AND "
            "source_key IN (SELECT source_key FROM stage_deleted)",
            {"d": dataset, "t": tenant}), bt)
        # unsent messages of the rows removed keep their payload (see feed_render)
        feed_render.materialize(wh, dataset, f"SELECT tenant, source_key FROM {std} WHERE "
                                "tenant = :t AND source_key IN (SELECT source_key FROM "
                                "stage_deleted)", {"t": tenant})
        wh.execute(f"DELETE FROM {std} WHERE tenant = :t AND source_key IN "
                   "(SELECT source_key FROM stage_deleted)", {"t": tenant})
        wh.execute("DELETE FROM quarantine WHERE dataset = :d AND tenant = :t AND source_key "
                   "IN (SELECT source_key FROM stage_deleted)", {"d": dataset, "t": tenant})
        _dirty(wh, dataset, tenant, days + qdays)
        _count_days(days, std_days)
        _count_days(qdays, q_days)
    return std_days, q_days


def _rows(tenant: str, table: str, ods_days: dict, std_days: dict,
          q_days: dict) -> list[Removed]:
    days = sorted(set(ods_days) | set(std_days) | set(q_days))
    return [Removed(tenant, table, d, ods_days.get(d, 0), std_days.get(d, 0), q_days.get(d, 0))
            for d in days]


def _log(wh: Warehouse, source: str, rows: list[Removed]) -> None:
    now = datetime.now()
    for r in rows:
        wh.execute("INSERT INTO delete_log VALUES (:s, :t, :tb, :d, :o, :st, :q, :n)",
                   {"s": source, "t": r.tenant, "tb": r.table, "d": r.business_date,
                    "o": r.ods_rows, "st": r.std_rows, "q": r.quarantine_rows, "n": now})


def _ensure(wh: Warehouse) -> None:
    wh.execute(DDL)
    ensure_dirty(wh)  # removals mark their days without a load id: keyed marts load them whole
    wh.execute(marts.DIRTY_KEYS_DDL)
    wh.execute(QUARANTINE_DDL)


def remove(wh: Warehouse, source: str, tenant: str, table: str,
           keys: Iterable[int]) -> list[Removed]:
    """Remove ``keys`` of ``table`` for ``tenant`` from ODS, std, quarantine; log per day."""
    keys = sorted({int(k) for k in keys})
    if not keys:
        return []
    t = _table(table)
    bt, pk = t.info["business_time"], primary_key(t)
    _ensure(wh)
    with wh.transaction():
        _stage(wh, keys)
        ods_days: dict = {}
        _count_days(wh.query_df(
            f'SELECT "{bt}" AS d FROM {ods.ods_name(table)} WHERE org_code = :t AND {pk} IN '
            "(SELECT source_key FROM stage_deleted)", {"t": tenant})["d"], ods_days)
        std_days, q_days = _remove_std(wh, tenant, table)
        wh.execute(f"DELETE FROM {ods.ods_name(table)} WHERE org_code = :t AND {pk} IN "
                   "(SELECT source_key FROM stage_deleted)", {"t": tenant})
        rows = _rows(tenant, table, ods_days, std_days, q_days)
        _log(wh, source, rows)
        wh.execute("DROP TABLE stage_deleted")
    return rows


def propagate(reader, wh: Warehouse, source: str, diffs: Iterable[reconcile.DayDiff], *,
              tables_sql: dict[str, sa.Table] | None = None) -> list[Removed]:
    """Find the hard deletes behind ``diffs`` and remove them everywhere (idempotent)."""
    out: list[Removed] = []
    for (tenant, table), keys in find_deleted(reader, wh, source, diffs,
                                              tables_sql=tables_sql).items():
        out += remove(wh, source, tenant, table, keys)
    return out


def prune_orphans(wh: Warehouse, source: str, tenant: str,
                  tables: Iterable[str] = reconcile.RECONCILED) -> list[Removed]:
    """Remove std / quarantine rows of ``tenant`` whose ODS row no longer exists."""
    out: list[Removed] = []
    _ensure(wh)
    for table in tables:
        pk = primary_key(_table(table))
        keys: set[int] = set()
        for dataset, _ in _datasets(table):
            std = std_table(dataset)
            if not _exists(wh, std):
                continue
            for sql in (f"SELECT source_key FROM {std} s WHERE s.tenant = :t",
                        "SELECT source_key FROM quarantine s WHERE s.tenant = :t AND "
                        "s.dataset = :d"):
                df = wh.query_df(f"{sql} AND NOT EXISTS (SELECT 1 FROM "
                                 f"{ods.ods_name(table)} o WHERE o.org_code = :t AND "
                                 f"o.{pk} = s.source_key)", {"t": tenant, "d": dataset})
                keys.update(int(k) for k in df["source_key"])
        if not keys:
            continue
        with wh.transaction():
            _stage(wh, keys)
            std_days, q_days = _remove_std(wh, tenant, table)
            rows = _rows(tenant, table, {}, std_days, q_days)
            _log(wh, source, rows)
            wh.execute("DROP TABLE stage_deleted")
        out += rows
    return out
