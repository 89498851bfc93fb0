"""SQLAlchemy column types -> exact Arrow types, and row pages -> Arrow tables.

Money stays ``decimal128(p, s)`` (built from ``Decimal`` values, so an inexact value raises
instead of rounding silently), timestamps are ``timestamp[us]`` (``timestamp[ns]`` for SQL
Server ``DATETIME2(7)``, whose 100 ns ticks a microsecond type would truncate), integers keep
their width.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Dialect

_EPOCH = dt.datetime(1970, 1, 1)


class NanoTimestamp(int):
    """Nanoseconds since the epoch (naive), as produced by the DATETIME2(7) ODBC converter."""


def arrow_type(col_type: sa.types.TypeEngine, dialect: Dialect | None = None) -> pa.DataType:
    """The Arrow type that holds every value of ``col_type`` exactly."""
    impl = col_type.dialect_impl(dialect) if dialect is not None else col_type
    name = type(impl).__name__.upper()
    if name == "ROWVERSION":
        return pa.int64()  # selected as CAST(... AS BIGINT)
    if name == "DATETIME2" and (getattr(impl, "precision", None) or 7) > 6:
        return pa.timestamp("ns")
    if isinstance(col_type, sa.Boolean):
        return pa.bool_()
    if isinstance(col_type, sa.BigInteger):
        return pa.int64()
    if isinstance(col_type, sa.SmallInteger):
        return pa.int16()
    if isinstance(col_type, sa.Integer):
        return pa.int32()
    if isinstance(col_type, sa.Numeric) and not isinstance(col_type, sa.Float):
        p, s = col_type.precision or 38, col_type.scale or 0
        return pa.decimal128(p, s)
    if isinstance(col_type, sa.Float):
        return pa.float64()
    if isinstance(col_type, sa.DateTime):
        tz = "UTC" if getattr(col_type, "timezone", False) else None
        return pa.timestamp("us", tz=tz)
    if isinstance(col_type, sa.Date):
        return pa.date32()
    if isinstance(col_type, sa.Time):
        return pa.time64("us")
    if isinstance(col_type, sa.LargeBinary | sa.types._Binary):
        return pa.binary()
    if isinstance(col_type, sa.String):
        return pa.string()
    raise TypeError(f"no exact Arrow type for column type {col_type!r}")


def table_schema(table: sa.Table, dialect: Dialect | None = None) -> pa.Schema:
    """Arrow schema of a source table (column order kept)."""
    return pa.schema(
        [pa.field(c.name, arrow_type(c.type, dialect), nullable=c.nullable) for c in table.columns]
    )


def _column(values: Sequence, typ: pa.DataType) -> pa.Array:
    if pa.types.is_timestamp(typ):
        if typ.unit == "ns":
            return pa.array([_to_ns(v) for v in values], type=pa.int64()).cast(typ)
        return pa.array(values, type=typ)
    if pa.types.is_decimal(typ):
        return pa.array([_to_decimal(v, typ.scale) for v in values], type=typ)
    if pa.types.is_string(typ):
        return pa.array([v if v is None or isinstance(v, str) else str(v) for v in values], typ)
    if pa.types.is_date(typ):
        return pa.array([_to_date(v) for v in values], type=typ)
    return pa.array(values, type=typ)


def _to_ns(v) -> int | None:
    if v is None or isinstance(v, NanoTimestamp):
        return v
    if isinstance(v, str):  # 'YYYY-MM-DD hh:mm:ss.fffffff' (CONVERT style 121)
        base, _, frac = v.partition(".")
        return _to_ns(dt.datetime.fromisoformat(base)) + int((frac + "000000000")[:9])
    if isinstance(v, dt.datetime):
        delta = v.replace(tzinfo=None) - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    return int(v)


def _to_decimal(v, scale: int) -> Decimal | None:
    if v is None or isinstance(v, Decimal):
        return v
    if isinstance(v, float):  # SQLite stores NUMERIC as REAL: round to the declared scale
        return Decimal(repr(v)).quantize(Decimal(1).scaleb(-scale))
    return Decimal(v)


def _to_date(v):
    if isinstance(v, dt.datetime):
        return v.date()
    if isinstance(v, str):
        return dt.date.fromisoformat(v[:10])
    return v


def rows_to_arrow(rows: Sequence[Sequence], schema: pa.Schema) -> pa.Table:
    """Column-wise conversion of one page of row tuples (bounded by the chunk size)."""
    cols = list(zip(*rows, strict=False)) if rows else [() for _ in schema]
    arrays = [_column(col, f.type) for col, f in zip(cols, schema, strict=True)]
    return pa.Table.from_arrays(arrays, schema=schema)
