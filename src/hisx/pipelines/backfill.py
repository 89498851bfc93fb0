"""Backfill one center from the source's first row version (no Dagster).

:func:`reset_center` forgets what the warehouse read of a center: its ODS rows of every
table and its cursors (``ods_cursor``, ``ods_cursor_state``) for one source, in one
transaction. The next extraction then re-reads the center from row version 0 and lands every
row under a new load, standardization re-processes them (std and quarantine are replaced by
source key), the marts re-load every business day they touch and feed messages keep their
deterministic ids (acked ones are never re-sent). Rows that vanished from the source meanwhile
are left in std / quarantine: :func:`hisx.pipelines.deletes.prune_orphans` removes them once
the ODS is rebuilt. Running the whole backfill twice gives the same warehouse.
"""

from __future__ import annotations

from dataclasses import dataclass

from hisx.connectors.warehouse import Warehouse
from hisx.pipelines import ods
from hisx.pipelines.extract_sources import ensure_state
from hisx.simulator.schema import TABLES


@dataclass(frozen=True)
class Reset:
    center: str
    source: str
    ods_rows: int  # rows forgotten (re-read by the next extraction)
    cursors: int  # cursor rows removed


def reset_center(wh: Warehouse, source: str, center: str,
                 tables: list[str] | None = None) -> Reset:
    """Forget ``center``'s ODS rows and ``source`` cursors (all tables, or ``tables``)."""
    names = tables or [t.name for t in TABLES]
    ensure_state(wh)
    rows = cursors = 0
    with wh.transaction():
        for name in names:
            rows += int(wh.scalar(f"SELECT count(*) FROM {ods.ods_name(name)} WHERE "
                                  "org_code = :c", {"c": center}) or 0)
            wh.execute(f"DELETE FROM {ods.ods_name(name)} WHERE org_code = :c", {"c": center})
            for cur in ("ods_cursor", "ods_cursor_state"):
                p = {"s": source, "t": name, "c": center}
                cursors += int(wh.scalar(f"SELECT count(*) FROM {cur} WHERE source = :s AND "
                                         "table_name = :t AND tenant = :c", p) or 0)
                wh.execute(f"DELETE FROM {cur} WHERE source = :s AND table_name = :t AND "
                           "tenant = :c", p)
    return Reset(center, source, rows, cursors)
