"""Bookkeeping tables: what each extraction and standardization batch read and wrote.

They make the conservation invariant checkable after the fact (asset checks, API, tests):
for every standardization batch and tenant, ``rows_in = standardized + quarantined +
deduplicated``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

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


def log_std(wh: Warehouse, **row: Any) -> None:
    row.setdefault("logged_at", datetime.now())
    wh.execute(
        "INSERT INTO std_log VALUES (:load_id, :dataset, :tenant, :rows_in, :standardized, "
        ":quarantined, :deduplicated, :map_version, :logged_at)",
        row,
    )


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
