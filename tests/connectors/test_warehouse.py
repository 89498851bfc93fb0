"""The warehouse interface behaves the same on DuckDB and PostgreSQL."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from hisx.connectors.warehouse import Warehouse, ident, split_statements


@pytest.fixture(params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def wh(request, tmp_path):
    if request.param == "duckdb":
        w = Warehouse.from_url(f"duckdb:///{tmp_path / 'w.duckdb'}")
        yield w
        w.close()
    else:
        url = request.getfixturevalue("pg_database")
        w = Warehouse.from_url(url)
        yield w
        w.close()


def _table() -> pa.Table:
    return pa.table({
        "tenant": ["a", "b", "a"],
        "d": pa.array([date(2026, 8, 1), date(2026, 8, 2), None], pa.date32()),
        "amount": pa.array([Decimal("1.10"), Decimal("-2.25"), Decimal("0.01")],
                           pa.decimal128(12, 2)),
        "name": ["高行", "三林康德, \"quoted\"", ""],
    })


def test_load_and_query_round_trip(wh: Warehouse) -> None:
    wh.execute("CREATE TABLE t (tenant VARCHAR(10), d DATE, amount NUMERIC(12,2), name TEXT)")
    assert wh.load_arrow("t", _table()) == 3
    df = wh.query_df("SELECT * FROM t WHERE tenant = :x ORDER BY amount", {"x": "a"})
    assert list(df["amount"].map(Decimal)) == [Decimal("0.01"), Decimal("1.10")]
    assert df["name"].tolist() == ["", "高行"]
    assert wh.scalar("SELECT name FROM t WHERE tenant = :x", {"x": "b"}) == '三林康德, "quoted"'


def test_transaction_rolls_back(wh: Warehouse) -> None:
    wh.execute("CREATE TABLE t2 (x INTEGER)")
    with pytest.raises(RuntimeError), wh.transaction():
        wh.execute("INSERT INTO t2 VALUES (:v)", {"v": 1})
        raise RuntimeError("boom")
    assert wh.scalar("SELECT count(*) FROM t2") == 0
    with wh.transaction():
        wh.execute("INSERT INTO t2 VALUES (:v)", {"v": 2})
    assert wh.scalar("SELECT sum(x) FROM t2") == 2


def test_reader_sees_committed_rows_only(wh: Warehouse) -> None:
    """The second connection the overlapped standardization reads through: it sees what is
    committed, not the open transaction of the writer, and closing it leaves the writer."""
    wh.execute("CREATE TABLE t4 (x INTEGER)")
    wh.execute("INSERT INTO t4 VALUES (1)")
    with wh.reader() as rd:
        with wh.transaction():
            wh.execute("INSERT INTO t4 VALUES (2)")
            assert wh.scalar("SELECT count(*) FROM t4") == 2
            assert rd.scalar("SELECT count(*) FROM t4") == 1
        assert rd.scalar("SELECT count(*) FROM t4") == 2
        rd.execute("CREATE TEMPORARY TABLE only_here (y INTEGER)")
    assert wh.scalar("SELECT sum(x) FROM t4") == 3  # the writer still works
    assert not wh.table_exists("only_here")


def test_a_load_outside_a_transaction_is_committed(wh: Warehouse) -> None:
    """As every other statement outside a transaction: another session sees the rows at
    once (PostgreSQL's COPY went through the raw driver connection and stayed in an open
    transaction until the next statement committed)."""
    wh.execute("CREATE TABLE t5 (tenant VARCHAR(10), d DATE, amount NUMERIC(12,2), name TEXT)")
    wh.load_arrow("t5", _table())
    with wh.reader() as rd:
        assert rd.scalar("SELECT count(*) FROM t5") == 3


def test_bound_parameters_are_not_sql(wh: Warehouse) -> None:
    wh.execute("CREATE TABLE t3 (s TEXT)")
    evil = "x'); DROP TABLE t3; --"
    wh.execute("INSERT INTO t3 VALUES (:s)", {"s": evil})
    assert wh.scalar("SELECT s FROM t3") == evil
    assert wh.table_exists("t3")


def test_identifier_guard_and_splitter() -> None:
    assert ident("ods_patients") == "ods_patients"
    with pytest.raises(ValueError):
        ident("t; DROP TABLE x")
    assert split_statements("-- c\nSELECT 1;\nSELECT 2;\n") == ["SELECT 1", "SELECT 2"]


def test_duckdb_transaction_does_not_hold_loaded_arrow_tables(tmp_path) -> None:
    """DuckDB's Python client keeps what a statement scanned alive until the transaction
    ends; ``load_arrow`` hands over a releasable handle, so a transaction of many loads
    holds none of their Arrow tables (their memory was a long transaction's peak)."""
    pool = pa.default_memory_pool()
    w = Warehouse.from_url(f"duckdb:///{tmp_path / 'w.duckdb'}")
    try:
        w.execute("CREATE TABLE env (k BIGINT, body VARCHAR)")
        before = pool.bytes_allocated()
        with w.transaction():
            for part in range(4):
                keys = pa.array(range(part * 50_000, (part + 1) * 50_000), pa.int64())
                body = pc.binary_join_element_wise(
                    "{\"payload\":\"", pc.cast(keys, pa.string()), "x" * 200 + "\"}", "")
                assert w.load_arrow("env", pa.table({"k": keys, "body": body})) == 50_000
                del keys, body
            held = pool.bytes_allocated() - before
        assert held < 5 * 2**20, f"the transaction held {held / 2**20:.0f} MB of Arrow tables"
        assert w.scalar("SELECT count(DISTINCT k) FROM env") == 200_000
        assert w.scalar("SELECT body FROM env WHERE k = 123456") == (
            "{\"payload\":\"123456" + "x" * 200 + "\"}")
    finally:
        w.close()


def test_refresh_statistics_analyzes_what_was_just_filled(wh: Warehouse) -> None:
    """PostgreSQL: a table never analyzed, or changed by more than a tenth of its rows, is
    analyzed (the planner then knows its size); a fresh one is not; inside a transaction
    nothing is (ANALYZE would hold its lock to the end). DuckDB: nothing to do."""
    import time

    wh.execute("CREATE TABLE t6 (k BIGINT, v TEXT)")
    wh.load_arrow("t6", pa.table({"k": pa.array(range(5000), pa.int64()),
                                  "v": pa.array([f"v{i}" for i in range(5000)])}))
    if wh.dialect != "postgresql":
        assert wh.refresh_statistics(["t6"]) == []
        return
    with wh.transaction():
        assert wh.refresh_statistics(["t6"]) == []
    assert wh.refresh_statistics(["t6", "t6_missing"]) == ["t6"]
    assert wh.scalar("SELECT reltuples FROM pg_class WHERE relname = 't6'") == 5000
    assert wh.refresh_statistics(["t6"]) == []
    wh.load_arrow("t6", pa.table({"k": pa.array(range(5000, 8000), pa.int64()),
                                  "v": pa.array(["w"] * 3000)}))
    deadline = time.monotonic() + 15  # table counters reach the statistics within ~1 s
    analyzed: list[str] = []
    while not analyzed and time.monotonic() < deadline:
        time.sleep(0.3)
        analyzed = wh.refresh_statistics(["t6"])
    assert analyzed == ["t6"]
    assert wh.scalar("SELECT reltuples FROM pg_class WHERE relname = 't6'") == 8000
    with pytest.raises(ValueError):
        wh.refresh_statistics(["t6; DROP TABLE t6"])


@pytest.mark.postgres
def test_ddl_of_existing_indexes_does_not_wait_for_writers(pg_database) -> None:
    """``CREATE INDEX IF NOT EXISTS`` takes the table's SHARE lock even when the index is
    there; ``execute_ddl`` skips it, so ensuring a ledger inside one standardization's
    transaction neither waits for nor blocks another's writes."""
    from hisx.connectors.warehouse import execute_ddl
    from hisx.pipelines import feeds

    with Warehouse.from_url(pg_database) as a, Warehouse.from_url(pg_database) as b:
        feeds.ensure_ledger(a)
        with a.transaction():
            a.execute("INSERT INTO feed_ledger (message_id, dataset, tenant, source_key, "
                      "row_version, topic, msg_key, envelope, state, enqueued_at) VALUES "
                      "('m', 'd', 't', 1, 1, 'x', 'k', '{}', 'pending', now())")
            with b.transaction():  # another writer's transaction, failing fast on a lock
                b.execute("SET LOCAL lock_timeout = '500ms'")
                feeds.ensure_ledger(b)
                with pytest.raises(Exception, match="lock timeout"):
                    b.execute(feeds.ledger_ddl("postgresql")[-1])  # as it ran before
        execute_ddl(a, ["CREATE INDEX IF NOT EXISTS ix_new ON feed_ledger (tenant)"])
        assert a.scalar("SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_new'") == 1


def test_working_threads_sets_duckdb_threads_for_the_block_then_restores(wh) -> None:
    """DuckDB's thread count changes for the block only (after an error too); PostgreSQL
    has none to set: the block simply runs."""
    if wh.dialect != "duckdb":
        with wh.working_threads(1):
            assert wh.scalar("SELECT 1") == 1
        return
    wh.execute("SET threads = 2")
    with wh.working_threads(1):
        assert wh.scalar("SELECT current_setting('threads')") == 1
    assert wh.scalar("SELECT current_setting('threads')") == 2
    with pytest.raises(RuntimeError), wh.working_threads(1):
        raise RuntimeError("a failed standardization")
    assert wh.scalar("SELECT current_setting('threads')") == 2
    with wh.working_threads(None):
        assert wh.scalar("SELECT current_setting('threads')") == 2
