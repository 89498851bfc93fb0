"""Writing generated frames into a database: fast paths for SQLite and PostgreSQL, DDL per dialect.

SQLite: executemany on the raw DBAPI connection inside one transaction, journal and sync off.
PostgreSQL (psycopg 3): ``COPY ... FROM STDIN (FORMAT csv)``. Other dialects: SQLAlchemy Core
executemany. On mssql ``row_version`` is a server-generated ROWVERSION and is never inserted.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from sqlalchemy import Date, DateTime, Engine, Integer, create_engine
from sqlalchemy.dialects import registry
from sqlalchemy.schema import CreateIndex, CreateTable

from hisx.simulator.schema import TABLES, metadata

TABLE_BY_NAME = {t.name: t for t in TABLES}


def ddl(dialect_name: str) -> list[str]:
    """CREATE TABLE and CREATE INDEX statements of the source schema compiled for a dialect."""
    dialect = registry.load(dialect_name)()
    out = [str(CreateTable(t).compile(dialect=dialect)).strip() for t in TABLES]
    for t in TABLES:
        out += [str(CreateIndex(ix).compile(dialect=dialect)).strip()
                for ix in sorted(t.indexes, key=lambda i: i.name)]
    return out


def _kind(col) -> str:
    if isinstance(col.type, DateTime):
        return "dt"
    if isinstance(col.type, Date):
        return "date"
    if isinstance(col.type, Integer):
        return "int"
    return "other"


def _column_values(s: pd.Series, kind: str, sep: str) -> list:
    """Python values of a column; NULLs as None; times as ISO text (``sep`` between date and time)."""
    mask = s.isna().to_numpy()
    if kind in ("dt", "date"):
        arr = s.to_numpy().astype("datetime64[us]" if kind == "dt" else "datetime64[D]")
        txt = np.datetime_as_string(arr, unit="us" if kind == "dt" else "D")
        if kind == "dt" and sep != "T":
            txt = np.char.replace(txt, "T", sep)
        vals = txt.tolist()
    elif kind == "int" and s.dtype.kind == "f":
        vals = [0 if m else int(x) for x, m in zip(s.tolist(), mask, strict=True)]
    else:
        vals = s.tolist()
    if mask.any():
        vals = [None if m else x for x, m in zip(vals, mask, strict=True)]
    return vals


class Sink:
    """Creates the schema and appends frames to one database."""

    def __init__(self, url: str):
        self.engine: Engine = create_engine(url)
        self.dialect = self.engine.dialect.name
        self._raw = None

    # schema -----------------------------------------------------------------------------------
    def create_schema(self) -> None:
        """Drop and create the tables (indexes come after the load, see ``create_indexes``)."""
        metadata.drop_all(self.engine)
        with self.engine.begin() as conn:
            for t in TABLES:
                conn.execute(CreateTable(t))

    def create_indexes(self) -> None:
        self.flush()
        with self.engine.begin() as conn:
            for t in TABLES:
                for ix in t.indexes:
                    conn.execute(CreateIndex(ix))

    # writing ----------------------------------------------------------------------------------
    def _conn(self):
        if self._raw is None:
            self._raw = self.engine.raw_connection()
            if self.dialect == "sqlite":
                cur = self._raw.cursor()
                cur.execute("PRAGMA journal_mode=OFF")
                cur.execute("PRAGMA synchronous=OFF")
                cur.close()
        return self._raw

    def write(self, name: str, df: pd.DataFrame) -> int:
        if df is None or not len(df):
            return 0
        table = TABLE_BY_NAME[name]
        cols = [c for c in table.columns if not (self.dialect == "mssql" and c.name == "row_version")]
        if self.dialect == "sqlite":
            data = [_column_values(df[c.name], _kind(c), " ") for c in cols]
            sql = (f"INSERT INTO {name} ({', '.join(c.name for c in cols)}) "
                   f"VALUES ({', '.join('?' * len(cols))})")
            cur = self._conn().cursor()
            cur.executemany(sql, zip(*data, strict=True))
            cur.close()
        elif self.dialect == "postgresql" and self.engine.dialect.driver == "psycopg":
            out = pd.DataFrame({c.name: pd.Series(_column_values(df[c.name], _kind(c), " "), dtype=object)
                                for c in cols})
            buf = io.StringIO()
            out.to_csv(buf, index=False, header=False, na_rep="")
            raw = self._conn().driver_connection
            with raw.cursor() as cur, cur.copy(
                    f"COPY {name} ({', '.join(c.name for c in cols)}) FROM STDIN (FORMAT csv)") as cp:
                cp.write(buf.getvalue())
        else:
            self.flush()
            data = {c.name: pd.Series(_column_values(df[c.name], _kind(c), " "), dtype=object)
                    for c in cols}
            dt_cols = [c.name for c in cols if _kind(c) in ("dt", "date")]
            rows = pd.DataFrame(data)
            for c in dt_cols:
                rows[c] = pd.to_datetime(rows[c])
                if _kind(table.c[c]) == "date":
                    rows[c] = rows[c].dt.date
            records = rows.astype(object).where(rows.notna(), None).to_dict("records")
            with self.engine.begin() as conn:
                for i in range(0, len(records), 5000):
                    conn.execute(table.insert(), records[i:i + 5000])
        return len(df)

    def flush(self) -> None:
        """Commit what the raw connection wrote."""
        if self._raw is not None:
            self._raw.commit()
            self._raw.close()
            self._raw = None

    def close(self) -> None:
        self.flush()
        self.engine.dispose()
