"""A PostgreSQL query's result straight into Arrow: ``COPY (query) TO STDOUT`` as CSV, parsed
by Arrow's CSV reader with the column types PostgreSQL describes.

Fetching rows through the DB-API built a Python tuple per row, a pandas frame of objects, then
Arrow: 36 % of standardizing the charges into a PostgreSQL warehouse went there (py-spy,
31 centers). COPY streams the rows as text and Arrow parses them in C++.

The result keeps PostgreSQL's exact types, as DuckDB's reader does: ``int8`` stays ``int64``
when it holds NULLs (the tuple path made it ``float64``), ``numeric(p, s)`` is
``decimal128(p, s)``, text is ``string``. Only read-only queries over the types below are read
this way; :func:`copy_arrow` returns ``None`` for anything else, before sending anything, and
the caller fetches rows as before.

COPY takes no bound parameters: the values are quoted by psycopg's own adapters
(``psycopg.sql.Literal``), the way psycopg documents for statements without parameters.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

_READ_ONLY = re.compile(r"^\s*(select|with)\b", re.IGNORECASE)
_WRITES = re.compile(r"\b(insert|update|delete|merge|into|for\s+update|for\s+share)\b",
                     re.IGNORECASE)

#: PostgreSQL type OIDs → Arrow types (numeric needs its declared precision and scale)
_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(), 21: pa.int16(), 23: pa.int32(), 20: pa.int64(),
    700: pa.float32(), 701: pa.float64(),
    25: pa.string(), 1043: pa.string(), 1042: pa.string(), 19: pa.string(),
    1082: pa.date32(), 1114: pa.timestamp("us"),
}
_NUMERIC = 1700


def readable(sql: str) -> bool:
    """Whether ``sql`` is one read-only query COPY can wrap (no writes, no row locks)."""
    return bool(_READ_ONLY.match(sql)) and not _WRITES.search(sql) and ";" not in sql.rstrip(
        "; \n\t")


def _literal(value: Any, conn: Any) -> str:
    from psycopg import sql

    if isinstance(value, float):  # a float parameter is float8, not an untyped numeric
        return sql.Literal(repr(value)).as_string(conn) + "::float8"
    if value is None or isinstance(value, bool | int | str | Decimal | date | datetime):
        return sql.Literal(value).as_string(conn)
    raise TypeError(f"no literal for a {type(value).__name__} parameter")


def inline(sql: str, params: Mapping[str, Any] | None, conn: Any) -> str | None:
    """``sql`` with its ``:name`` parameters as psycopg literals; None if one cannot be."""
    from hisx.connectors.warehouse import _PARAM  # the warehouse's own :name syntax

    params = params or {}
    try:
        return _PARAM.sub(lambda m: (_literal(params[m.group(1)], conn)
                                     if m.group(1) in params else m.group(0)), sql)
    except TypeError:
        return None


def _schema(cur: Any, query: str) -> pa.Schema | None:
    cur.execute(f"SELECT * FROM ({query}) AS _hisx_q LIMIT 0")
    fields = []
    for col in cur.description:
        if col.type_code == _NUMERIC:
            if col.precision is None or col.precision > 38:
                return None  # unconstrained numeric: its scale varies per row
            t = pa.decimal128(col.precision, col.scale or 0)
        elif col.type_code in _TYPES:
            t = _TYPES[col.type_code]
        else:
            return None
        fields.append(pa.field(col.name, t))
    names = [f.name for f in fields]
    if not fields or len(set(names)) != len(names):
        return None
    return pa.schema(fields)


def _parse(data: bytes, schema: pa.Schema) -> pa.Table:
    if not data:
        return schema.empty_table()
    return pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=schema.names, block_size=1 << 24),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=schema, null_values=[""], strings_can_be_null=True,
            quoted_strings_can_be_null=False, true_values=["t"], false_values=["f"]),
    ).select(schema.names).cast(schema)


def copy_arrow(conn: Any, sql: str, params: Mapping[str, Any] | None) -> pa.Table | None:
    """The result of ``sql`` on psycopg connection ``conn`` (in its current transaction),
    or None when it is not a query this reader takes (nothing was sent then) or its text
    did not parse (the query ran; reading it again is safe: it is read-only)."""
    if not readable(sql):
        return None
    query = inline(sql.strip().rstrip(";"), params, conn)
    if query is None:
        return None
    with conn.cursor() as cur:
        schema = _schema(cur, query)
        if schema is None:
            return None
        buf = bytearray()
        with cur.copy(f"COPY ({query}) TO STDOUT WITH (FORMAT csv)") as cp:
            for chunk in cp:
                buf += chunk
    try:
        return _parse(bytes(buf), schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None  # e.g. 'infinity' dates: the caller reads the rows as before
