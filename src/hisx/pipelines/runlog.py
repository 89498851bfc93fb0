"""Bookkeeping tables: what each extraction and standardization batch read and wrote.

They make the conservation invariant checkable after the fact (asset checks, API, tests):
for every standardization batch and tenant, ``rows_in = standardized + quarantined +
deduplicated``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pyarrow as pa

from hisx.connectors.warehouse import Warehouse

DDL = [
    """CREATE TABLE IF NOT EXISTS load_log (
        load_id VARCHAR(40) NOT NULL, source VARCHAR(100) NOT NULL,
        table_name VARCHAR(100) NOT NULL, tenant VARCHAR(40) NOT NULL,
        rows_read BIGINT NOT NULL, rows_changed BIGINT NOT NULL,
        rv_from BIGINT, rv_to BIGINT, endpoint VARCHAR(200),
        started_at TIMESTAMP NOT NULL, finished_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS std_log (
        load_id VARCHAR(40) NOT NULL, dataset VARCHAR(60) NOT NULL,
        tenant VARCHAR(40) NOT NULL, rows_in BIGINT NOT NULL,
        standardized BIGINT NOT NULL, quarantined BIGINT NOT NULL,
        deduplicated BIGINT NOT NULL, map_version VARCHAR(40),
        logged_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS std_done (
        dataset VARCHAR(60) NOT NULL, tenant VARCHAR(40) NOT NULL,
        load_id VARCHAR(40) NOT NULL)""",
]


STD_LOG = pa.schema([
    ("load_id", pa.string()), ("dataset", pa.string()), ("tenant", pa.string()),
    ("rows_in", pa.int64()), ("standardized", pa.int64()), ("quarantined", pa.int64()),
    ("deduplicated", pa.int64()), ("map_version", pa.string()),
    ("logged_at", pa.timestamp("us"))])


def ensure_runlog(wh: Warehouse) -> None:
    for stmt in DDL:
        wh.execute(stmt)


def log_extract(wh: Warehouse, **row: Any) -> None:
    row.setdefault("finished_at", datetime.now())
    wh.execute(
        "INSERT INTO load_log VALUES (:load_id, :source, :table_name, :tenant, :rows_read, "
        ":rows_changed, :rv_from, :rv_to, :endpoint, :started_at, :finished_at)",
        row,
    )


LOAD_LOG = pa.schema([
    ("load_id", pa.string()), ("source", pa.string()), ("table_name", pa.string()),
    ("tenant", pa.string()), ("rows_read", pa.int64()), ("rows_changed", pa.int64()),
    ("rv_from", pa.int64()), ("rv_to", pa.int64()), ("endpoint", pa.string()),
    ("started_at", pa.timestamp("us")), ("finished_at", pa.timestamp("us"))])


def log_extract_many(wh: Warehouse, rows: list[dict[str, Any]]) -> None:
    """:func:`log_extract` of many (table, center)s in one statement: a city's hour lands
    thousands of them, and a one-row INSERT each cost a third of its extraction."""
    if rows:
        now = datetime.now()
        wh.load_arrow("load_log", pa.Table.from_pylist(
            [{k: r.get(k) for k in LOAD_LOG.names} | {"finished_at": r.get("finished_at", now)}
             for r in rows], schema=LOAD_LOG))


def pending_loads(wh: Warehouse, dataset: str, table: str, tenant: str) -> list[str]:
    """Extraction loads of ``table`` for ``tenant`` not yet standardized into ``dataset``."""
    t = wh.query_arrow(
        "SELECT DISTINCT l.load_id FROM load_log l WHERE l.table_name = :t AND l.tenant = :n "
        "AND l.rows_changed > 0 AND NOT EXISTS (SELECT 1 FROM std_done d WHERE "
        "d.dataset = :d AND d.tenant = :n AND d.load_id = l.load_id) ORDER BY l.load_id",
        {"t": table, "n": tenant, "d": dataset},
    )
    return [str(x) for x in t.column(0).to_pylist()]


def mark_done(wh: Warehouse, dataset: str, tenant: str, load_ids: list[str]) -> None:
    for lid in load_ids:
        wh.execute("INSERT INTO std_done VALUES (:d, :n, :l)", {"d": dataset, "n": tenant, "l": lid})


def log_std_many(wh: Warehouse, rows: list[dict[str, Any]]) -> None:
    """One std_log row per dict (a group's centers), in one statement."""
    if rows:
        now = datetime.now()
        wh.load_arrow("std_log", pa.Table.from_pylist(
            [{**r, "logged_at": r.get("logged_at", now)} for r in rows], schema=STD_LOG))


def pending_loads_many(wh: Warehouse, dataset: str, table: str, tenants: list[str]
                       ) -> dict[str, list[str]]:
    """:func:`pending_loads` of many centers in one query: {tenant: load ids in order}."""
    if not tenants:
        return {}
    names = {f"n{i}": t for i, t in enumerate(tenants)}
    t = wh.query_arrow(
        "SELECT DISTINCT l.tenant, l.load_id FROM load_log l WHERE l.table_name = :t "
        f"AND l.tenant IN ({', '.join(':' + k for k in names)}) AND l.rows_changed > 0 "
        "AND NOT EXISTS (SELECT 1 FROM std_done d WHERE d.dataset = :d AND "
        "d.tenant = l.tenant AND d.load_id = l.load_id) ORDER BY l.tenant, l.load_id",
        {"t": table, "d": dataset, **names})
    out: dict[str, list[str]] = {}
    for tenant, lid in zip(t.column(0).to_pylist(), t.column(1).to_pylist(), strict=True):
        out.setdefault(str(tenant), []).append(str(lid))
    return out


def mark_done_many(wh: Warehouse, dataset: str, done: list[tuple[str, str]]) -> None:
    """std_done rows for (tenant, load id) pairs, in one statement."""
    if done:
        wh.load_arrow("std_done", pa.table({
            "dataset": pa.array([dataset] * len(done), pa.string()),
            "tenant": pa.array([t for t, _ in done], pa.string()),
            "load_id": pa.array([lid for _, lid in done], pa.string())}))
