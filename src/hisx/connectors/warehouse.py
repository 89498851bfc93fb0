"""The warehouse: DuckDB (embedded default) or any SQLAlchemy database (PostgreSQL tested).

One small interface over both so pipelines and marts are written once. SQL everywhere uses
``:name`` bound parameters; values are never formatted into SQL text by hand (PostgreSQL's
``COPY (query)`` takes no parameters: psycopg's adapters quote them, see :mod:`pg_arrow`).
Bulk loads and reads go through the fastest native path: DuckDB's Arrow scan, PostgreSQL's
COPY (psycopg 3).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from hisx.config import size_env
from hisx.connectors import pg_arrow

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def ident(name: str) -> str:
    """Validate a table/column identifier (identifiers cannot be bound parameters)."""
    if not _IDENT.match(name):
        raise ValueError(f"not a safe SQL identifier: {name!r}")
    return name


def split_statements(sql: str) -> list[str]:
    """Split a SQL file on ``;`` at line ends (our SQL files keep one statement per block)."""
    parts = re.split(r";\s*(?:\n|$)", sql)
    out = []
    for p in parts:
        body = "\n".join(ln for ln in p.splitlines() if not ln.strip().startswith("--")).strip()
        if body:
            out.append(body)
    return out


def in_list(prefix: str, values: Iterable[Any]) -> tuple[str, dict[str, Any]]:
    """``:p0, :p1, …`` and their bound values (dialect-neutral IN lists)."""
    names = {f"{prefix}{i}": v for i, v in enumerate(values)}
    return ", ".join(":" + k for k in names), names


_CREATE_INDEX = re.compile(r"^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+IF\s+NOT\s+EXISTS\s+(\w+)\s",
                           re.IGNORECASE)


def execute_ddl(wh: Warehouse, stmts: Iterable[str]) -> None:
    """Run idempotent DDL, skipping each ``CREATE INDEX IF NOT EXISTS`` whose index exists.

    PostgreSQL takes the table's SHARE lock for that statement even when the index is there:
    run inside a writing transaction (the feed ledger's DDL runs in the standardization's),
    it waits for every other writer of the table and then blocks them until commit."""
    stmts = list(stmts)
    have: set[str] = set()
    if wh.dialect == "postgresql" and any(_CREATE_INDEX.match(s) for s in stmts):
        have = set(wh.query_arrow("SELECT indexname FROM pg_indexes WHERE schemaname = "
                                  "current_schema()").column(0).to_pylist())
    for stmt in stmts:
        m = _CREATE_INDEX.match(stmt)
        if not (m and m.group(1).lower() in have):
            wh.execute(stmt)


class Warehouse:
    """Base class; use :meth:`from_url`."""

    dialect: str = ""
    url: str = ""

    @staticmethod
    def from_url(url: str) -> Warehouse:
        if url.startswith("duckdb://"):
            return DuckDBWarehouse(url)
        return SqlAlchemyWarehouse(url)

    # -- interface ---------------------------------------------------------------------
    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        raise NotImplementedError

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        raise NotImplementedError

    def load_arrow(self, table: str, data: pa.Table) -> int:
        """Append ``data`` to an existing ``table`` (columns matched by name)."""
        raise NotImplementedError

    @contextmanager
    def working_memory(self, limit: str | None) -> Iterator[None]:
        """Run a block with another working-memory cap where the engine has one (DuckDB);
        a no-op for servers that manage their own."""
        yield

    @contextmanager
    def working_threads(self, threads: int | None) -> Iterator[None]:
        """Run a block with another number of engine threads where the engine has one
        (DuckDB); a no-op for servers."""
        yield

    def refresh_statistics(self, tables: Iterable[str]) -> list[str]:
        """Bring the planner's statistics of ``tables`` up to date where the engine keeps
        them between statements (PostgreSQL); returns the tables analyzed. DuckDB keeps its
        own as it writes: nothing to do."""
        return []

    _depth = 0

    def _begin(self) -> None:
        raise NotImplementedError

    def _commit(self) -> None:
        raise NotImplementedError

    def _rollback(self) -> None:
        raise NotImplementedError

    @contextmanager
    def transaction(self) -> Iterator[Warehouse]:
        """One transaction; nested calls join the outer one (all or nothing)."""
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        self._begin()
        self._depth = 1
        try:
            yield self
        except BaseException:
            self._depth = 0
            self._rollback()
            raise
        self._depth = 0
        self._commit()

    def table_exists(self, name: str) -> bool:
        raise NotImplementedError

    def _second_connection(self) -> Warehouse:
        raise NotImplementedError

    @contextmanager
    def reader(self) -> Iterator[Warehouse]:
        """A second connection to the same database, closed on exit: it reads what is
        committed while this one writes in a transaction (from another thread)."""
        other = self._second_connection()
        try:
            yield other
        finally:
            other.close()

    def close(self) -> None:
        pass

    # -- helpers -------------------------------------------------------------------------
    def query_df(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        return self.query_arrow(sql, params).to_pandas()

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        t = self.query_arrow(sql, params)
        return t.column(0)[0].as_py() if t.num_rows else None

    def run_script(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Run every statement of a SQL file with the same bound parameters."""
        for stmt in split_statements(sql):
            used = set(_PARAM.findall(stmt))
            self.execute(stmt, {k: v for k, v in (params or {}).items() if k in used})

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ArrowHandle:
    """An Arrow table behind the Arrow PyCapsule stream interface, whose reference can be
    dropped: DuckDB holds the handle until the transaction ends, not the table."""

    def __init__(self, table: pa.Table) -> None:
        self.table: pa.Table | None = table

    def __arrow_c_stream__(self, requested_schema: object = None) -> object:
        if self.table is None:
            raise RuntimeError("this Arrow table was already loaded and released")
        return self.table.__arrow_c_stream__(requested_schema)

    def release(self) -> None:
        self.table = None


class DuckDBWarehouse(Warehouse):
    dialect = "duckdb"

    def __init__(self, url: str) -> None:
        import duckdb

        self.url = url
        path = url[len("duckdb:///"):] if url.startswith("duckdb:///") else ":memory:"
        if path not in (":memory:", ""):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(path or ":memory:")
        # Bulk loads write the WAL once and checkpoint rarely (at 1 GB or on close) instead
        # of rewriting the file every 16 MB: measured 2.4x faster commits on the demo's loads.
        threshold = os.environ.get("HISX_DUCKDB_CHECKPOINT", "1GB")
        if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]?i?B", threshold):
            raise ValueError(f"HISX_DUCKDB_CHECKPOINT must be a size like 1GB, not {threshold!r}")
        self.con.execute(f"SET checkpoint_threshold = '{threshold}'")
        # DuckDB's buffer pool defaults to 80 % of RAM and keeps what it read: bounded here so
        # the pipeline's peak RSS stays flat as the warehouse grows (operators spill to disk).
        # 256 MB: a 31-center backfill peaked at 1,016 MB with it against 1,229 MB with 512 MB,
        # in the same time (171 s against 176 s).
        self.memory_limit = size_env("HISX_DUCKDB_MEMORY", "256MB")
        self.con.execute(f"SET memory_limit = '{self.memory_limit}'")
        self._depth = 0

    @contextmanager
    def working_memory(self, limit: str | None) -> Iterator[None]:
        """DuckDB's memory limit set to ``limit`` for the block, then back. A set-based
        mart statement holds one hash table per joined dataset at once: at 256 MB the data
        quality mart over 8 centers failed 4 of 20 runs (Out of Memory), while the
        standardization that precedes it needs no more than the pipeline's limit."""
        if not limit:
            yield
            return
        self.con.execute(f"SET memory_limit = '{limit}'")
        try:
            yield
        finally:
            self.con.execute(f"SET memory_limit = '{self.memory_limit}'")

    @contextmanager
    def working_threads(self, threads: int | None) -> Iterator[None]:
        """DuckDB's ``threads`` set to ``threads`` for the block, then back (``None``: as
        it is)."""
        if not threads:
            yield
            return
        before = self.con.sql("SELECT current_setting('threads')").fetchall()[0][0]
        self.con.execute(f"SET threads = {int(threads)}")
        try:
            yield
        finally:
            self.con.execute(f"SET threads = {int(before)}")

    @staticmethod
    def _bind(sql: str, params: Mapping[str, Any] | None) -> tuple[str, dict | None]:
        used = set(_PARAM.findall(sql))
        bound = {k: v for k, v in (params or {}).items() if k in used}
        return _PARAM.sub(r"$\1", sql), (bound or None)

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self.con.execute(*self._bind(sql, params))

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        text, bound = self._bind(sql, params)
        return self.con.sql(text, params=bound).to_arrow_table()

    def load_arrow(self, table: str, data: pa.Table) -> int:
        """Insert ``data``. It is handed to DuckDB through :class:`_ArrowHandle`, released
        once the insert is done: DuckDB's Python client keeps every object a statement
        scanned alive until the transaction ends, so a transaction of many inserts held all
        their Arrow tables (a 500,000-row standardization transaction: 526 MB of them)."""
        if data.num_rows == 0:
            return 0
        handle = _ArrowHandle(data)
        self.con.register("_hisx_load", handle)
        try:
            cols = ", ".join(f'"{c}"' for c in data.column_names)
            self.con.execute(
                f"INSERT INTO {ident(table)} ({cols}) SELECT {cols} FROM _hisx_load"
            )
        finally:
            self.con.unregister("_hisx_load")
            handle.release()
        return data.num_rows

    def _begin(self) -> None:
        self.con.execute("BEGIN TRANSACTION")

    def _commit(self) -> None:
        self.con.execute("COMMIT")

    def _rollback(self) -> None:
        self.con.execute("ROLLBACK")

    def table_exists(self, name: str) -> bool:
        schema, _, tbl = name.rpartition(".")
        return bool(
            self.scalar(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = :t"
                + (" AND table_schema = :s" if schema else ""),
                {"t": tbl, **({"s": schema} if schema else {})},
            )
        )

    def _second_connection(self) -> DuckDBWarehouse:
        other = object.__new__(DuckDBWarehouse)
        other.url, other.con, other._depth = self.url, self.con.cursor(), 0
        other.memory_limit = self.memory_limit
        return other

    def close(self) -> None:
        self.con.close()


class SqlAlchemyWarehouse(Warehouse):
    """Any SQLAlchemy database; COPY fast path on PostgreSQL with psycopg 3."""

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        self.url = url
        self.engine = sa.create_engine(url)
        self.dialect = self.engine.dialect.name
        self.conn = self.engine.connect()
        self._depth = 0
        self._copies = self.dialect == "postgresql" and self.engine.dialect.driver == "psycopg"

    def _raw(self) -> Any:
        """The psycopg connection under SQLAlchemy's (same session, same transaction)."""
        if not self._depth and not self.conn.in_transaction():
            self.conn.begin()  # as SQLAlchemy's own execute would: autocommitted after
        return self.conn.connection.driver_connection

    def _autocommit(self) -> None:
        if not self._depth and self.conn.in_transaction():
            self.conn.commit()

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        import sqlalchemy as sa

        self.conn.execute(sa.text(sql), dict(params or {}))
        self._autocommit()

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        import sqlalchemy as sa

        if self._copies:  # PostgreSQL: COPY as CSV parsed by Arrow (pg_arrow), if it takes it
            try:
                out = pg_arrow.copy_arrow(self._raw(), sql, params)
            except Exception:
                if not self._depth:  # leave the connection usable, as after a commit
                    self.conn.rollback()
                raise
            if out is not None:
                self._autocommit()
                return out
        res = self.conn.execute(sa.text(sql), dict(params or {}))
        df = pd.DataFrame(res.fetchall(), columns=list(res.keys()))
        self._autocommit()
        return pa.Table.from_pandas(df, preserve_index=False)

    def load_arrow(self, table: str, data: pa.Table) -> int:
        if data.num_rows == 0:
            return 0
        cols = ", ".join(f'"{c}"' for c in data.column_names)
        if self._copies:
            buf = io.BytesIO()
            pacsv.write_csv(data, buf, pacsv.WriteOptions(include_header=False))
            with self._raw().cursor() as cur, cur.copy(
                f"COPY {ident(table)} ({cols}) FROM STDIN WITH (FORMAT csv)"
            ) as cp:
                cp.write(buf.getvalue())
        else:
            import sqlalchemy as sa

            marks = ", ".join(f":{c}" for c in data.column_names)
            self.conn.execute(
                sa.text(f"INSERT INTO {ident(table)} ({cols}) VALUES ({marks})"), data.to_pylist()
            )
        self._autocommit()
        return data.num_rows

    def _begin(self) -> None:
        if self.conn.in_transaction():
            self.conn.commit()
        self.conn.begin()

    def _commit(self) -> None:
        self.conn.commit()

    def _rollback(self) -> None:
        self.conn.rollback()

    def refresh_statistics(self, tables: Iterable[str]) -> list[str]:
        """``ANALYZE`` each of ``tables`` never analyzed, or changed by more than a tenth of
        its rows (at least 1,000) since: autovacuum gets there only after a while, and a
        backfill plans its next statements over tables it has just filled. Without them the
        person-key lookup over freshly loaded ``ods_patients`` and ``person_key_cache`` was
        planned as a nested loop and ran for minutes (31 centers). Outside a transaction
        only: ``ANALYZE`` holds its lock to the transaction's end."""
        if self.dialect != "postgresql" or self._depth:
            return []
        names = [ident(t) for t in tables]
        if not names:
            return []
        marks = {f"t{i}": n for i, n in enumerate(names)}
        stale = self.query_arrow(
            "SELECT relname FROM pg_stat_user_tables WHERE schemaname = current_schema() "
            f"AND relname IN ({', '.join(':' + k for k in marks)}) AND (COALESCE("
            "last_analyze, last_autoanalyze) IS NULL OR n_mod_since_analyze > "
            "GREATEST(1000, 0.1 * n_live_tup))", marks).column(0).to_pylist()
        for t in stale:
            self.execute(f"ANALYZE {ident(t)}")
        return sorted(stale)

    def table_exists(self, name: str) -> bool:
        import sqlalchemy as sa

        schema, _, tbl = name.rpartition(".")
        return sa.inspect(self.conn).has_table(tbl, schema=schema or None)

    def _second_connection(self) -> SqlAlchemyWarehouse:
        other = object.__new__(_SqlAlchemyReader)
        other.url, other.engine, other.dialect = self.url, self.engine, self.dialect
        other.conn, other._depth = self.engine.connect(), 0
        other._copies = self._copies
        return other

    def close(self) -> None:
        self.conn.close()
        self.engine.dispose()


class _SqlAlchemyReader(SqlAlchemyWarehouse):
    """A second connection of a :class:`SqlAlchemyWarehouse` (the engine stays its owner's)."""

    def close(self) -> None:
        self.conn.close()
