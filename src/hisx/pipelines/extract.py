"""Incremental extraction: source table → ODS, per tenant, from the persisted row-version cursor.

Each chunk is landed and the cursor advanced in one warehouse transaction, so a crash
between chunks resumes exactly where it stopped and a re-run is a no-op.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from hisx.connectors.warehouse import Warehouse
from hisx.pipelines import ods, runlog


@dataclass
class ExtractResult:
    load_id: str
    source: str
    table_name: str
    tenant: str
    rows_read: int
    rows_changed: int
    rv_from: int
    rv_to: int
    endpoint: str

    def as_dict(self) -> dict:
        return asdict(self)


def extract_table(
    reader, wh: Warehouse, *, source: str, tenant: str, load_id: str, upto: int | None = None
) -> ExtractResult:
    """Read rows of ``reader.table`` for ``tenant`` after the cursor (up to ``upto``) into ODS."""
    table = reader.table.name
    started = datetime.now()
    after = ods.get_cursor(wh, source, table, tenant)
    read = changed = 0
    high = after
    for batch in reader.read(tenant, after, upto):
        if batch.num_rows == 0:
            continue
        top = int(max(batch.column("row_version").to_pylist()))
        with wh.transaction():
            changed += ods.upsert(wh, table, batch, load_id)
            high = max(high, top)
            ods.set_cursor(wh, source, table, tenant, high)
        read += batch.num_rows
    endpoint = getattr(getattr(reader, "stats", None), "endpoint", "") or ""
    res = ExtractResult(load_id, source, table, tenant, read, changed, after, high, endpoint)
    if read:
        runlog.log_extract(wh, **res.as_dict(), started_at=started)
    return res
