"""PostgreSQL reads through COPY into Arrow (hisx.connectors.pg_arrow): the same values as the
driver's rows, PostgreSQL's exact types, and the queries it must leave to the row path."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal

import pyarrow as pa
import pytest

from hisx.connectors import pg_arrow
from hisx.connectors.warehouse import Warehouse

pytestmark = pytest.mark.postgres

ROWS = [
    (1, 9_007_199_254_740_993, 7, Decimal("-12345678.91"), "plain", "a,b", date(2026, 8, 1),
     datetime(2026, 8, 1, 9, 30, 0, 123456), True, 1.5),
    (2, None, None, None, None, None, None, None, None, None),
    (3, -1, 0, Decimal("0.01"), "", 'quote " and \\ back', date(1999, 12, 31),
     datetime(2026, 8, 1, 23, 59, 59), False, float("nan")),
    (4, 0, -32768, Decimal("0.00"), "line\nbreak\r\n", "张三 中文", date(2026, 2, 28),
     datetime(2026, 2, 28, 0, 0), None, float("inf")),
    (5, 42, 32767, Decimal("99999999.99"), "NULL", ",", date(2026, 1, 1),
     datetime(2026, 1, 1, 0, 0, 0, 1), True, -0.0),
]
DDL = ("CREATE TABLE t (id INTEGER, big BIGINT, small SMALLINT, amt NUMERIC(10, 2), "
       "txt TEXT, vc VARCHAR(40), d DATE, ts TIMESTAMP, flag BOOLEAN, x DOUBLE PRECISION)")


@pytest.fixture
def pg(pg_database: str) -> Iterator[Warehouse]:
    wh = Warehouse.from_url(pg_database)
    wh.execute(DDL)
    raw = wh._raw()
    with raw.cursor() as cur:
        cur.executemany("INSERT INTO t VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", ROWS)
    wh.conn.commit()
    yield wh
    wh.close()


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a)
                                                     == math.copysign(1, b))
    return a == b and type(a) is type(b)


def test_values_and_types_are_postgresqls(pg: Warehouse) -> None:
    got = pg_arrow.copy_arrow(pg._raw(), "SELECT * FROM t ORDER BY id", None)
    assert got is not None, "a plain SELECT over these types is read through COPY"
    assert got.schema == pa.schema([
        ("id", pa.int32()), ("big", pa.int64()), ("small", pa.int16()),
        ("amt", pa.decimal128(10, 2)), ("txt", pa.string()), ("vc", pa.string()),
        ("d", pa.date32()), ("ts", pa.timestamp("us")), ("flag", pa.bool_()),
        ("x", pa.float64())])
    for row, want in zip(got.to_pylist(), ROWS, strict=True):
        for (name, value), expected in zip(row.items(), want, strict=True):
            assert _same(value, expected), (name, value, expected)


def test_the_warehouse_reads_through_copy_and_agrees_with_the_row_path(pg: Warehouse) -> None:
    sql = ("SELECT id, big, amt, txt, ts, x FROM t WHERE (d >= :day OR d IS NULL) "
           "AND coalesce(txt, '') <> :not_txt AND coalesce(x, 0) < :cap ORDER BY id")
    params = {"day": date(2000, 1, 1), "not_txt": "it's", "cap": 2.5}
    fast = pg.query_arrow(sql, params)
    pg._copies = False
    slow = pg.query_arrow(sql, params)
    assert fast.column("big").type == pa.int64()  # NULLs do not make it float64
    assert fast.column("id").to_pylist() == slow.column("id").to_pylist() == [1, 2, 5]
    f, s = fast.to_pandas(), slow.to_pandas()
    for c in ("id", "big", "amt", "txt", "ts"):
        assert f[c].astype(object).where(f[c].notna(), None).tolist() == \
            s[c].astype(object).where(s[c].notna(), None).tolist(), c


def test_parameters_are_quoted_by_psycopg(pg: Warehouse) -> None:
    """Every kind of parameter gives the rows bound parameters give."""
    cases = [("txt = :v", "plain"), ("vc = :v", 'quote " and \\ back'), ("vc = :v", "张三 中文"),
             ("d = :v", date(2026, 2, 28)), ("ts = :v", datetime(2026, 1, 1, 0, 0, 0, 1)),
             ("amt = :v", Decimal("0.01")), ("flag = :v", False), ("x = :v", 1.5),
             ("big = :v", 9_007_199_254_740_993), ("coalesce(:v, id) = id", None),
             ("txt = :v", "x'; DROP TABLE t; --")]
    for where, value in cases:
        sql = f"SELECT id FROM t WHERE {where} ORDER BY id"
        fast = pg_arrow.copy_arrow(pg._raw(), sql, {"v": value})
        assert fast is not None, where
        pg._copies = False
        slow = pg.query_arrow(sql, {"v": value})
        pg._copies = True
        assert fast.column("id").to_pylist() == slow.column("id").to_pylist(), (where, value)
    assert pg.scalar("SELECT count(*) FROM t") == len(ROWS)


def test_what_copy_does_not_take_goes_the_row_path(pg: Warehouse) -> None:
    raw = pg._raw()
    assert pg_arrow.copy_arrow(raw, "SELECT sum(amt) AS s FROM t", None) is None  # numeric
    assert pg_arrow.copy_arrow(raw, "SELECT interval '1 day' AS i", None) is None
    assert pg_arrow.copy_arrow(raw, "SELECT id, id FROM t", None) is None  # duplicate names
    assert pg_arrow.copy_arrow(raw, "SELECT DATE 'infinity' AS d", None) is None
    assert pg_arrow.copy_arrow(raw, "SELECT id FROM t FOR UPDATE", None) is None
    assert pg_arrow.copy_arrow(raw, "INSERT INTO t (id) VALUES (9) RETURNING id", None) is None
    assert pg_arrow.copy_arrow(raw, "WITH x AS (DELETE FROM t RETURNING id) SELECT * FROM x",
                               None) is None
    pg.conn.commit()
    assert pg.scalar("SELECT count(*) FROM t") == len(ROWS), "nothing was run"
    # and through the warehouse they still read, by rows
    assert pg.scalar("SELECT sum(amt) AS s FROM t") == Decimal("87654321.09")


def test_empty_results_keep_their_schema(pg: Warehouse) -> None:
    got = pg.query_arrow("SELECT id, amt, ts FROM t WHERE id < 0")
    assert got.num_rows == 0
    assert got.schema == pa.schema([("id", pa.int32()), ("amt", pa.decimal128(10, 2)),
                                    ("ts", pa.timestamp("us"))])


def test_reads_see_the_transactions_own_writes(pg: Warehouse) -> None:
    with pytest.raises(RuntimeError), pg.transaction():
        pg.execute("INSERT INTO t (id, txt) VALUES (10, 'mine')")
        assert pg.query_arrow("SELECT txt FROM t WHERE id = 10").column(0).to_pylist() == ["mine"]
        raise RuntimeError("roll back")
    assert pg.query_arrow("SELECT txt FROM t WHERE id = 10").num_rows == 0


def test_an_error_leaves_the_warehouse_usable(pg: Warehouse) -> None:
    import psycopg

    with pytest.raises(psycopg.errors.UndefinedTable):
        pg.query_arrow("SELECT * FROM no_such_table")
    assert pg.scalar("SELECT count(*) FROM t") == len(ROWS)
    assert not pg.conn.in_transaction()
