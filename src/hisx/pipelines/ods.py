"""The operational data store: a warehouse copy of each source table, landed idempotently.

``ods_<table>`` holds the source columns plus ``_load_id`` and ``_loaded_at``; per source
primary key only the highest ``row_version`` is kept, so re-reads and replays never
duplicate. ``ods_cursor`` holds the row-version high-water mark per (source, table, tenant)
and is advanced in the same transaction as the rows it covers.
"""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql

from hisx.connectors.warehouse import Warehouse, execute_ddl, ident
from hisx.simulator.schema import TABLES, primary_key

SOURCE_TABLES: dict[str, Table] = {t.name: t for t in TABLES}

CURSOR_DDL = """
CREATE TABLE IF NOT EXISTS ods_cursor (
    source VARCHAR(100) NOT NULL,
    table_name VARCHAR(100) NOT NULL,
    tenant VARCHAR(40) NOT NULL,
    last_row_version BIGINT NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (source, table_name, tenant)
)"""


def ods_name(table: str) -> str:
    return ident(f"ods_{table}")


def _column_sql(col) -> str:
    typ = col.type.compile(dialect=postgresql.dialect())
    typ = typ.replace("TIMESTAMP WITHOUT TIME ZONE", "TIMESTAMP")
    return f'"{col.name}" {typ}'


def ods_ddl(table: Table, dialect: str) -> str:
    cols = [_column_sql(c) for c in table.columns]
    cols += ['"_load_id" VARCHAR(40) NOT NULL', '"_loaded_at" TIMESTAMP NOT NULL']
    pk = f', PRIMARY KEY ("{primary_key(table)}")' if dialect != "duckdb" else ""
    return f"CREATE TABLE IF NOT EXISTS {ods_name(table.name)} ({', '.join(cols)}{pk})"


def ensure_ods(wh: Warehouse) -> None:
    """Create the ODS tables and the cursor table if they do not exist."""
    stmts = [CURSOR_DDL]
    for t in TABLES:
        stmts.append(ods_ddl(t, wh.dialect))
        if wh.dialect == "postgresql":
            stmts.append(f"CREATE INDEX IF NOT EXISTS ix_{ods_name(t.name)}_load "
                         f"ON {ods_name(t.name)} (_load_id)")
    execute_ddl(wh, stmts)


def get_cursor(wh: Warehouse, source: str, table: str, tenant: str) -> int:
    v = wh.scalar(
        "SELECT last_row_version FROM ods_cursor WHERE source = :s AND table_name = :t "
        "AND tenant = :n",
        {"s": source, "t": table, "n": tenant},
    )
    return int(v) if v is not None else 0


def set_cursor(wh: Warehouse, source: str, table: str, tenant: str, value: int) -> None:
    params = {"s": source, "t": table, "n": tenant, "v": int(value), "u": datetime.now()}
    wh.execute(
        "DELETE FROM ods_cursor WHERE source = :s AND table_name = :t AND tenant = :n", params
    )
    wh.execute("INSERT INTO ods_cursor VALUES (:s, :t, :n, :v, :u)", params)


def _latest_per_key(batch: pa.Table, pk: str) -> pa.Table:
    """Keep one row per primary key: the highest row_version (a batch may re-read a row)."""
    if batch.num_rows < 2:
        return batch
    order = pc.sort_indices(batch, [(pk, "ascending"), ("row_version", "descending")])
    batch = batch.take(order)
    keys = batch.column(pk)
    first = pc.not_equal(keys.slice(1), keys.slice(0, len(keys) - 1))
    keep = pa.concat_arrays([pa.array([True]), first.combine_chunks()])
    return batch.filter(keep)


def upsert(wh: Warehouse, table: str, batch: pa.Table, load_id: str) -> int:
    """Land a batch of source rows; a row replaces the stored one only if its version is higher.

    Returns the number of rows that changed the ODS (new keys or higher versions).
    """
    return sum(upsert_by_center(wh, table, batch, load_id).values())


def upsert_by_center(wh: Warehouse, table: str, batch: pa.Table, load_id: str
                     ) -> dict[str, int]:
    """:func:`upsert`, counting the changed rows per center (``org_code``): the pages of
    many centers' reads land in one statement set."""
    src = SOURCE_TABLES[table]
    pk = primary_key(src)
    batch = _latest_per_key(batch, pk)
    n = batch.num_rows
    if not n:
        return {}
    batch = batch.append_column("_load_id", pa.array([load_id] * n, pa.string()))
    batch = batch.append_column("_loaded_at", pa.array([datetime.now()] * n, pa.timestamp("us")))
    ods = ods_name(table)
    stage = ident(f"stage_{table}")
    keys = batch.column(pk)
    rng = {"lo": pc.min(keys).as_py(), "hi": pc.max(keys).as_py()}
    with wh.transaction():
        if not _stored_any(wh, ods, pk, keys, rng):
            # first sight of these keys (a backfill; keys are distinct already): every row
            # is news, no staging
            wh.load_arrow(ods, batch)
            return _per_center(batch.column("org_code"))
        wh.execute(f"DROP TABLE IF EXISTS {stage}")
        wh.execute(f"CREATE TEMPORARY TABLE {stage} AS SELECT * FROM {ods} WHERE 1 = 0")
        wh.load_arrow(stage, batch)
        # rows already stored at the same or a higher version are not news: drop from stage
        # the batch's key range lets DuckDB skip the ODS row groups that cannot match (keys
        # are allocated in blocks), instead of joining against the whole table every page
        wh.execute(
            f"DELETE FROM {stage} WHERE EXISTS (SELECT 1 FROM {ods} o "
            f"WHERE o.{pk} BETWEEN :lo AND :hi AND o.{pk} = {stage}.{pk} "
            f"AND o.row_version >= {stage}.row_version)", rng
        )
        changed = wh.query_arrow(f"SELECT org_code FROM {stage}").column(0)
        wh.execute(f"DELETE FROM {ods} WHERE {pk} BETWEEN :lo AND :hi AND {pk} IN "
                   f"(SELECT {pk} FROM {stage})", rng)
        wh.execute(f"INSERT INTO {ods} SELECT * FROM {stage}")
        wh.execute(f"DROP TABLE {stage}")
    return _per_center(changed)


def _stored_any(wh: Warehouse, ods: str, pk: str, keys: pa.ChunkedArray,
                rng: dict[str, object]) -> bool:
    """Whether the ODS holds any of the batch's ``keys`` already. Nothing in their range is
    the cheap answer; otherwise the keys themselves are looked up: source keys come in
    blocks per center, so a page's range spans other centers' rows landed by the parallel
    readers before it (a 31-center backfill: 54 of its 91 pages), and staging them to find
    no stored key cost more than landing them."""
    if not wh.scalar(f"SELECT count(*) FROM (SELECT 1 FROM {ods} WHERE {pk} BETWEEN :lo AND "
                     ":hi LIMIT 1) x", rng):
        return False
    wh.execute("DROP TABLE IF EXISTS stage_ods_keys")
    wh.execute(f"CREATE TEMPORARY TABLE stage_ods_keys AS SELECT {pk} FROM {ods} WHERE 1 = 0")
    wh.load_arrow("stage_ods_keys", pa.table({pk: keys}))
    hit = wh.scalar(f"SELECT count(*) FROM (SELECT 1 FROM {ods} o JOIN stage_ods_keys k ON "
                    f"o.{pk} = k.{pk} WHERE o.{pk} BETWEEN :lo AND :hi LIMIT 1) x", rng)
    wh.execute("DROP TABLE stage_ods_keys")
    return bool(hit)


def _per_center(org_codes: pa.Array | pa.ChunkedArray) -> dict[str, int]:
    counts = pc.value_counts(org_codes)
    return {str(v): int(c) for v, c in zip(counts.field("values").to_pylist(),
                                           counts.field("counts").to_pylist(), strict=True)}
