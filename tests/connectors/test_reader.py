"""TableReader on an SQLite source built from hisx.simulator.schema."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mssql, postgresql

from hisx.connectors.source import TableReader
from hisx.connectors.source.statements import compile_sql, page_select, page_sql
from hisx.simulator import schema

T = schema.registrations


def _row(i: int, org: str, rv: int) -> dict:
    return {
        "reg_id": i, "org_code": org, "visit_no": f"门诊{i:06d}", "patient_id": 1000 + i,
        "dept_code": "内科", "doctor_code": "D01",
        "reg_time": dt.datetime(2024, 3, 1, 8, 0, 0, 123456) + dt.timedelta(minutes=i),
        "visit_kind": "初诊", "visit_type": "门诊", "reg_fee": Decimal("12.35") + i,
        "status": "正常", "is_deleted": i % 7 == 0,
        "updated_at": dt.datetime(2024, 3, 1, 9), "row_version": rv,
    }


@pytest.fixture()
def engine(tmp_path):
    eng = sa.create_engine(f"sqlite:///{tmp_path / 'src.sqlite'}")
    schema.metadata.create_all(eng, tables=[T])
    rows = [_row(i, "ORG_A" if i % 3 else "ORG_B", rv=10 * i) for i in range(1, 301)]
    with eng.begin() as c:
        c.execute(T.insert(), rows)
    return eng


def test_reads_every_tenant_row_once_in_keyset_pages(engine):
    r = TableReader(engine, T, chunk_rows=17, endpoint="demo")
    pages = list(r.read("ORG_A", after=0))
    got = pa.concat_tables(pages)
    want = [10 * i for i in range(1, 301) if i % 3]
    assert got.column("row_version").to_pylist() == want
    assert set(got.column("org_code").to_pylist()) == {"ORG_A"}
    assert all(p.num_rows <= 17 for p in pages)
    assert r.stats.rows == len(want) and r.stats.chunks == len(pages) + (len(want) % 17 == 0)
    assert (r.stats.min_rv, r.stats.max_rv, r.stats.endpoint) == (want[0], want[-1], "demo")
    assert r.stats.longest_txn_s > 0


def test_after_and_upto_bound_the_read(engine):
    r = TableReader(engine, T, chunk_rows=5)
    got = pa.concat_tables(r.read("ORG_B", after=300, upto=900))
    assert got.column("row_version").to_pylist() == [10 * i for i in range(31, 91) if i % 3 == 0]
    assert list(r.read("ORG_B", after=3000)) == []
    assert r.high_water("ORG_B") == 3000 and r.high_water("ORG_A") == 2990
    assert r.high_water() == 3000 and r.high_water("NOPE") is None


def test_all_tenants_and_exact_types(engine):
    r = TableReader(engine, T, chunk_rows=1000)
    (page,) = list(r.read(None, after=0))
    assert page.num_rows == 300
    s = page.schema
    assert s.field("reg_fee").type == pa.decimal128(12, 2)
    assert s.field("reg_time").type == pa.timestamp("us")
    assert s.field("reg_id").type == pa.int64() and s.field("is_deleted").type == pa.int16()
    first = page.slice(0, 1).to_pylist()[0]
    assert first["reg_fee"] == Decimal("13.35")
    assert first["reg_time"] == dt.datetime(2024, 3, 1, 8, 1, 0, 123456)
    assert first["visit_no"] == "门诊000001" and first["status"] == "正常"


@pytest.mark.parametrize("dialect", ["mssql", "postgresql", "sqlite"])
def test_page_sql_compiled_once_equals_each_page_compiled(dialect):
    shapes = [("ORG_A", 5, 99, 1000), ("ORG_B", 7, None, 1000), (None, 0, 42, 10),
              (None, 3, None, 10), ("ORG_A", 2**40, 2**41, 1000)]
    for tenant, after, upto, limit in shapes:
        want = compile_sql(page_select(T, dialect, tenant, after, upto, limit), dialect)
        assert page_sql(T, dialect, tenant, after, upto, limit) == want


def test_page_statement_compiles_keyset_for_mssql_and_postgres():
    sql, params = compile_sql(page_select(T, "mssql", "ORG_A", 5, 99, 1000), "mssql")
    assert sql.startswith("SELECT TOP 1000 ")
    assert "OFFSET" not in sql.upper()
    assert "CAST(registrations.row_version AS BIGINT) AS row_version" in sql
    assert "registrations.row_version > CAST(? AS BINARY(8))" in sql
    assert "registrations.row_version <= CAST(? AS BINARY(8))" in sql
    assert "ORDER BY registrations.row_version" in sql
    assert params == ["ORG_A", 5, 99]
    pg = str(page_select(T, "postgresql", "ORG_A", 5, None, 10).compile(dialect=postgresql.dialect()))
    assert "LIMIT" in pg and "row_version >" in pg and "OFFSET" not in pg
    lit = page_select(T, "mssql", "ORG_A", 5, None, 10).compile(
        dialect=mssql.dialect(), compile_kwargs={"literal_binds": True})
    assert "SELECT TOP 10" in str(lit)
