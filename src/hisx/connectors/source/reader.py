"""Generic incremental table reader: keyset pages on ``row_version``, one short read
transaction per page, Arrow tables out, bounded memory (one page in flight)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import sqlalchemy as sa

from hisx.connectors.source.arrowtypes import rows_to_arrow, table_schema
from hisx.connectors.source.statements import high_water_select, page_select


@dataclass
class ReadStats:
    """What a read did: rows and pages, the row_version range seen, where it ran, and the
    longest single source transaction (the 'gentle' budget is < 2 s per page)."""

    rows: int = 0
    chunks: int = 0
    min_rv: int | None = None
    max_rv: int | None = None
    endpoint: str = ""
    longest_txn_s: float = 0.0

    def add_page(self, page: pa.Table, seconds: float) -> None:
        self.chunks += 1
        self.longest_txn_s = max(self.longest_txn_s, seconds)
        if page.num_rows == 0:
            return
        self.rows += page.num_rows
        rv = page.column("row_version")
        lo, hi = rv[0].as_py(), rv[-1].as_py()  # pages are ordered by row_version
        self.min_rv = lo if self.min_rv is None else min(self.min_rv, lo)
        self.max_rv = hi if self.max_rv is None else max(self.max_rv, hi)


class TableReader:
    """Reads one source table incrementally through a SQLAlchemy engine (SQLite demo files,
    PostgreSQL, SQL Server via mssql+pyodbc: the statements compile for each)."""

    def __init__(
        self,
        engine: sa.Engine,
        table: sa.Table,
        *,
        chunk_rows: int = 50_000,
        endpoint: str = "",
    ) -> None:
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
        if "row_version" not in table.c:
            raise ValueError(f"table {table.name!r} has no row_version column")
        self.engine = engine
        self.table = table
        self.chunk_rows = chunk_rows
        self.endpoint = endpoint or engine.url.render_as_string(hide_password=True)
        self.dialect = engine.dialect.name
        self.schema: pa.Schema = table_schema(table, engine.dialect)
        self.stats = ReadStats(endpoint=self.endpoint)

    def high_water(self, tenant: str | None = None) -> int | None:
        """max(row_version) visible now (for one tenant), or None for an empty table."""
        with self.engine.connect() as conn:
            v = conn.execute(high_water_select(self.table, self.dialect, tenant)).scalar()
        return None if v is None else int(v)

    def read_page(self, tenant: str | None, after: int, upto: int | None = None) -> pa.Table:
        """One keyset page in its own short read transaction."""
        stmt = page_select(self.table, self.dialect, tenant, after, upto, self.chunk_rows)
        t0 = time.perf_counter()
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).fetchall()
            conn.rollback()  # read-only: end the transaction before converting
        page = rows_to_arrow(rows, self.schema)
        self.stats.add_page(page, time.perf_counter() - t0)
        return page

    def read(
        self, tenant: str | None, after: int, upto: int | None = None
    ) -> Iterator[pa.Table]:
        """Rows with ``after < row_version <= upto`` (for ``tenant``), as Arrow tables of at
        most ``chunk_rows`` rows each, in row_version order. ``self.stats`` accumulates."""
        cursor = after
        while upto is None or cursor < upto:
            page = self.read_page(tenant, cursor, upto)
            if page.num_rows == 0:
                return
            yield page
            cursor = page.column("row_version")[-1].as_py()
            if page.num_rows < self.chunk_rows:
                return
