"""Read access to the warehouse for the API (never writes).

DuckDB (embedded default) allows one writer process and, while it holds the file, no reader
in another process. Two modes (``HISX_API_DUCKDB_MODE``):

* ``per_request`` (default): each request opens the file ``read_only`` and closes it when
  done, so the pipeline can take the write lock between requests; while the pipeline is
  writing, requests get 503 ``warehouse_busy`` (retry) instead of waiting.
* ``shared``: one ``read_only`` connection for the server's life, a cursor per request
  (fastest; the pipeline cannot write until the server stops). For read-only deployments
  such as a published snapshot.

``version()`` is what the response cache (:mod:`hisx.api.cache`) keys on: for DuckDB the
file and its WAL as ``stat`` sees them (a pipeline write changes it), read before each query;
other backends return None (no caching).

PostgreSQL / other SQLAlchemy URLs: a small pool (5 + 5 overflow); every request runs in a
``READ ONLY`` transaction on PostgreSQL. Point it at a hot standby to keep reads off the
primary.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

from hisx.api.auth import ApiError
from hisx.api.cache import Version, file_version
from hisx.connectors.warehouse import _PARAM


class Reader:
    """``query(sql, params) -> pa.Table`` with ``:name`` parameters on every backend."""

    dialect = ""

    @contextmanager
    def session(self) -> Iterator[Session]:
        raise NotImplementedError
        yield

    def close(self) -> None:
        pass

    def version(self) -> Version | None:
        """The warehouse version, or None when it cannot be read cheaply (no caching)."""
        return None

    @staticmethod
    def from_url(url: str, mode: str | None = None) -> Reader:
        if url.startswith("duckdb://"):
            return DuckDBReader(url, mode or os.environ.get("HISX_API_DUCKDB_MODE",
                                                            "per_request"))
        return SqlAlchemyReader(url)


class Session:
    """One request's connection."""

    def __init__(self, run: Any) -> None:
        self._run = run

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        return self._run(sql, params or {})


class DuckDBReader(Reader):
    dialect = "duckdb"

    def __init__(self, url: str, mode: str = "per_request") -> None:
        import duckdb

        if mode not in ("per_request", "shared"):
            raise ValueError(f"HISX_API_DUCKDB_MODE must be per_request or shared, not {mode}")
        self.path = url[len("duckdb:///"):]
        self.mode = mode
        self._duckdb = duckdb
        self._shared = duckdb.connect(self.path, read_only=True) if mode == "shared" else None
        self._lock = threading.Lock()

    def version(self) -> Version:
        return file_version(self.path, self.path + ".wal")

    def _open(self):
        try:
            return self._duckdb.connect(self.path, read_only=True)
        except self._duckdb.IOException as exc:
            raise ApiError(503, "warehouse_busy",
                           "the warehouse is being written by the pipeline; retry shortly"
                           ) from exc

    @contextmanager
    def session(self) -> Iterator[Session]:
        if self._shared is not None:
            with self._lock:
                cur = self._shared.cursor()
        else:
            cur = self._open()
        try:
            def run(sql: str, params: Mapping[str, Any]) -> pa.Table:
                used = set(_PARAM.findall(sql))
                bound = {k: v for k, v in params.items() if k in used}
                return cur.sql(_PARAM.sub(r"$\1", sql), params=bound or None).to_arrow_table()

            yield Session(run)
        finally:
            cur.close()

    def close(self) -> None:
        if self._shared is not None:
            self._shared.close()


class SqlAlchemyReader(Reader):
    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        self._sa = sa
        self.engine = sa.create_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True)
        self.dialect = self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        sa = self._sa
        with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.text("SET TRANSACTION READ ONLY"))

            def run(sql: str, params: Mapping[str, Any]) -> pa.Table:
                res = conn.execute(sa.text(sql), dict(params))
                cols = list(res.keys())
                rows = res.fetchall()
                return pa.table({c: pa.array([r[i] for r in rows]) for i, c in enumerate(cols)}
                                ) if rows else pa.table({c: pa.array([], pa.null())
                                                         for c in cols})

            try:
                yield Session(run)
            finally:
                conn.rollback()

    def close(self) -> None:
        self.engine.dispose()
