"""Live: extraction through pyodbc/arrow-odbc + psqlODBC from the PostgreSQL hot standby."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from decimal import Decimal

import pyarrow as pa
import pytest
import sqlalchemy as sa

from hisx.connectors.source import extract as extract_mod
from hisx.connectors.source.config import parse_source
from hisx.connectors.source.endpoints import OdbcEndpoint
from hisx.connectors.source.extract import (
    CursorState,
    NoHealthyReplica,
    SourceExtractor,
    extract_parallel,
)
from hisx.connectors.source.pgsetup import install_row_version
from hisx.connectors.source.reader import TableReader
from hisx.connectors.source.reconcile import reconcile_counts
from hisx.simulator import schema

pytestmark = [pytest.mark.standby, pytest.mark.odbc]
ORG = "310115001"


@pytest.fixture()
def table(pg_rig):
    md = sa.MetaData()
    t = schema.registrations.to_metadata(md, schema=f"t_{uuid.uuid4().hex[:8]}")
    eng = sa.create_engine(pg_rig.env["HISX_PG_PRIMARY_URL"])
    install_row_version(eng, [t])
    eng.dispose()
    return t


def insert(rig, t, ids, org=ORG, name="高行社区卫生服务中心", conn=None):
    sql = (f"insert into {t.fullname} (reg_id, org_code, visit_no, patient_id, dept_code, doctor_code,"
           " reg_time, visit_kind, visit_type, reg_fee, status, is_deleted, updated_at, row_version)"
           " select g, %s, %s || g, g, '内科', 'D1', timestamp '2024-03-01 08:00:00.123456'"
           " + g * interval '1 minute', '初诊', '门诊', 12.34 + g, '正常', 0, now(), 0"
           " from unnest(%s::bigint[]) g")
    args = (org, name, list(ids))
    return conn.execute(sql, args) if conn is not None else rig.primary(sql, args)


def source(rig, policy="wait", chunk=1000, max_lag=None, path="pyodbc", **pol):
    return parse_source("pg", {
        "dialect": "postgresql",
        "primary": {"name": "primary", "odbc": rig.env["HISX_PG_PRIMARY_ODBC"]},
        "replicas": [{"name": "standby", "odbc": rig.env["HISX_PG_STANDBY_ODBC"]}],
        "tenants": [{"org_code": ORG, "vendor": "v1"}],
        "policies": {"on_no_healthy_replica": policy, "chunk_rows": chunk, "max_lag": max_lag,
                     "extraction_path": path, "wait_poll_s": 0.2, "wait_timeout_s": 20, **pol},
    })


def run(ex, t, state):
    pages = list(ex.extract(t, ORG, state))
    return pa.concat_tables(pages) if pages else None


@pytest.mark.parametrize("path", ["pyodbc", "arrow-odbc"])
def test_reads_land_on_the_standby_with_exact_types(pg_rig, table, path):
    insert(pg_rig, table, range(1, 2501))
    pg_rig.caught_up()
    ex = SourceExtractor(source(pg_rig, chunk=1000, path=path))
    got = run(ex, table, st := CursorState())
    assert got.num_rows == 2500 and sorted(got.column("reg_id").to_pylist()) == list(range(1, 2501))
    s = ex.last
    assert (s.endpoint, s.used_primary, s.reader_in_recovery, s.chunks) == ("standby", False, True, 3)
    assert ex.replicas[0].query("select pg_is_in_recovery()")[0][0] is True
    assert st.rv == s.max_rv == got.column("row_version")[-1].as_py()
    row = got.slice(0, 1).to_pylist()[0]
    assert row["reg_fee"] == Decimal("13.34") and got.schema.field("reg_fee").type == pa.decimal128(12, 2)
    assert row["reg_time"] == dt.datetime(2024, 3, 1, 8, 1, 0, 123456)
    assert row["visit_no"] == "高行社区卫生服务中心1" and row["dept_code"] == "内科"
    assert run(ex, table, st) is None and ex.last.rows == 0  # repeated run: no-op
    ex.close()


def test_paused_replay_holds_the_cursor_then_resumes(pg_rig, table):
    insert(pg_rig, table, range(1, 101))
    pg_rig.caught_up()
    ex = SourceExtractor(source(pg_rig))
    st = CursorState()
    assert run(ex, table, st).num_rows == 100
    pg_rig.standby("select pg_wal_replay_pause()")
    try:
        insert(pg_rig, table, range(101, 201))
        replayed = st.rv
        assert run(ex, table, st) is None
        assert st.rv == replayed and st.fences  # the fence waits for replay
        lagging = SourceExtractor(source(pg_rig, policy="fail", max_lag=1))
        with pytest.raises(NoHealthyReplica, match="lag"):
            run(lagging, table, CursorState())
        lagging.close()
    finally:
        pg_rig.standby("select pg_wal_replay_resume()")
    pg_rig.caught_up()
    got = run(ex, table, st)
    assert sorted(got.column("reg_id").to_pylist()) == list(range(101, 201))
    assert ex.last.endpoint == "standby" and not st.fences
    ex.close()


def test_long_transaction_rows_with_earlier_versions_are_picked_up(pg_rig, table):
    import psycopg

    insert(pg_rig, table, range(1, 11))
    pg_rig.caught_up()
    ex = SourceExtractor(source(pg_rig))
    st = CursorState()
    assert sorted(run(ex, table, st).column("reg_id").to_pylist()) == list(range(1, 11))
    with psycopg.connect(pg_rig.primary_dsn) as long_txn:
        insert(pg_rig, table, [500], conn=long_txn)  # takes a row_version now, commits later
        insert(pg_rig, table, range(11, 21))
        pg_rig.caught_up()
        held = st.rv
        # Bound held below the open transaction: rows 11..20 (later versions) wait too.
        assert run(ex, table, st) is None and st.rv == held and st.fences
        long_txn.commit()
    pg_rig.caught_up()
    second = run(ex, table, st)
    assert sorted(second.column("reg_id").to_pylist()) == [*range(11, 21), 500]
    assert run(ex, table, st) is None
    ex.close()


@pytest.mark.parametrize("policy", ["wait", "primary", "fail"])
def test_standby_stopped_mid_extraction(pg_rig, table, policy):
    insert(pg_rig, table, range(1, 601))
    pg_rig.caught_up()
    ex = SourceExtractor(source(pg_rig, policy=policy, chunk=100))
    st = CursorState()
    seen: list[int] = []
    it = ex.extract(table, ORG, st)
    seen += next(it).column("reg_id").to_pylist()
    pg_rig.stop_standby()
    timer = threading.Timer(1.0, pg_rig.start_standby)
    try:
        if policy == "wait":
            timer.start()
        if policy == "fail":
            with pytest.raises(NoHealthyReplica):
                for page in it:
                    seen += page.column("reg_id").to_pylist()
        else:
            for page in it:
                seen += page.column("reg_id").to_pylist()
    finally:
        timer.join() if policy == "wait" else pg_rig.start_standby()
    if policy == "primary":
        assert ex.last.used_primary and "primary" in ex.last.endpoint
    if policy == "wait":
        assert ex.last.waited_s > 0.3 and not ex.last.used_primary
    pg_rig.caught_up()
    ex2 = SourceExtractor(source(pg_rig, policy="fail", chunk=100))
    rest = run(ex2, table, st)
    seen += rest.column("reg_id").to_pylist() if rest is not None else []
    assert sorted(seen) == list(range(1, 601))  # 0 lost, 0 duplicated
    ex.close()
    ex2.close()


def test_gbk_varchar_and_unicode_text_round_trip(pg_rig, table):
    text = "鹤沙航城·糖尿病随访"
    insert(pg_rig, table, range(1, 4), name=text)
    pg_rig.caught_up()
    cfg = source(pg_rig)
    gbk_odbc = (pg_rig.env["HISX_PG_STANDBY_ODBC"].replace("PostgreSQL Unicode", "PostgreSQL ANSI")
                + "ConnSettings=SET client_encoding TO 'GBK';")
    cfg = parse_source("gbk", {
        "dialect": "postgresql", "char_encoding": "gbk",
        "primary": {"odbc": pg_rig.env["HISX_PG_PRIMARY_ODBC"]},
        "replicas": [{"name": "standby-gbk", "odbc": gbk_odbc}],
        "policies": {"on_no_healthy_replica": "fail"}})
    ex = SourceExtractor(cfg)
    assert ex.path == "pyodbc"
    raw = ex.replicas[0].query("select current_setting('client_encoding')")[0][0]
    assert raw == "GBK"
    got = run(ex, table, CursorState())
    assert got.column("visit_no").to_pylist() == [f"{text}{i}" for i in (1, 2, 3)]
    assert got.column("dept_code").to_pylist() == ["内科"] * 3
    ex.close()


def test_reconcile_counts_find_a_hard_delete(pg_rig, table):
    insert(pg_rig, table, range(1, 3001))  # 1 minute apart: spans 3 business days
    pg_rig.caught_up()
    ex = SourceExtractor(source(pg_rig))
    d0, d1 = dt.date(2024, 3, 1), dt.date(2024, 3, 3)
    before = reconcile_counts(ex.replicas[0], table, ORG, d0, d1)
    assert [r["n"] for r in before] == [959, 1440, 601]
    pg_rig.primary(f"delete from {table.fullname} where reg_id = 2000")
    pg_rig.caught_up()
    after = reconcile_counts(ex.replicas[0], table, ORG, d0, d1)
    changed = [a["business_date"] for a, b in zip(after, before, strict=True) if a != b]
    assert changed == ["2024-03-02"] and after[1]["n"] == 1439
    eng = sa.create_engine(pg_rig.env["HISX_PG_STANDBY_URL"])  # SQLAlchemy path agrees
    assert reconcile_counts(eng, table, ORG, d0, d1) == after
    r = TableReader(eng, table, chunk_rows=700, endpoint="standby")
    assert sum(p.num_rows for p in r.read(ORG, 0)) == 2999 and r.stats.chunks == 5
    eng.dispose()
    ex.close()


def test_parallel_readers_deliver_every_row_once_with_ordered_snapshots(pg_rig, table):
    orgs = [ORG, "310115002", "310115003"]
    for k, org in enumerate(orgs):
        insert(pg_rig, table, range(1000 * k + 1, 1000 * k + 251), org=org)
    pg_rig.caught_up()
    cfg = source(pg_rig, chunk=100, path="arrow-odbc")
    states = [CursorState() for _ in orgs]
    jobs = [(table, org, st) for org, st in zip(orgs, states, strict=True)]
    seen: dict[int, list[int]] = {0: [], 1: [], 2: []}
    last_rv = [0, 0, 0]
    done = {}
    for ev in extract_parallel(cfg, jobs, max_readers=2):
        assert ev.state.rv >= last_rv[ev.job]  # a job's snapshots never go back
        last_rv[ev.job] = ev.state.rv
        if ev.page is not None:
            assert ev.job not in done
            seen[ev.job] += ev.page.column("reg_id").to_pylist()
            assert ev.state.rv == ev.page.column("row_version")[-1].as_py()  # never ahead
        else:
            done[ev.job] = ev.stats
    for k in range(3):
        assert seen[k] == list(range(1000 * k + 1, 1000 * k + 251))
        assert done[k].endpoint == "standby" and done[k].rows == 250 and done[k].tenant == orgs[k]
        assert states[k].rv == last_rv[k]
    assert not [t for t in threading.enumerate() if t.name.startswith("hisx-reader-")]


@pytest.mark.parametrize("readers", [1, 2])
def test_a_run_asks_fence_health_and_xmin_once_not_per_job(pg_rig, table, monkeypatch,
                                                          readers):
    """Many one-page (table, center) jobs, as an hour over a city: one fence per table, one
    health probe per endpoint and about one xmin per reader, and every row read; the
    next run takes a fresh fence and reads what was committed since."""
    orgs = [f"3101150{k:02d}" for k in range(12)]
    for k, org in enumerate(orgs):
        insert(pg_rig, table, range(100 * k + 1, 100 * k + 6), org=org)
    pg_rig.caught_up()
    asked: list[str] = []
    query = OdbcEndpoint.query

    def counted(self, stmt, params=None):
        asked.append(str(stmt))
        return query(self, stmt, params)

    monkeypatch.setattr(OdbcEndpoint, "query", counted)
    monkeypatch.setattr(extract_mod, "HEALTH_REUSE_S", 600.0)  # however slow the machine
    cfg = source(pg_rig, path="arrow-odbc")
    states = {org: CursorState() for org in orgs}

    def one_run() -> dict[str, list[int]]:
        asked.clear()
        got: dict[str, list[int]] = {}
        for ev in extract_parallel(cfg, [(table, o, states[o]) for o in orgs],
                                   max_readers=readers):
            if ev.page is not None:
                got.setdefault(orgs[ev.job], []).extend(ev.page.column("reg_id").to_pylist())
        return got

    got = one_run()
    assert got == {o: list(range(100 * k + 1, 100 * k + 6)) for k, o in enumerate(orgs)}
    assert sum("pg_snapshot_xmax" in q for q in asked) == 1  # one fence for the table
    assert sum("pg_last_wal_replay_lsn" in q for q in asked) <= readers  # health, not per job
    assert sum("pg_snapshot_xmin" in q for q in asked) <= 2 * readers
    assert len(asked) < 2 * len(orgs)  # per job before: six each
    insert(pg_rig, table, [9001, 9002], org=orgs[3])
    pg_rig.caught_up()
    assert one_run() == {orgs[3]: [9001, 9002]}  # a new run, a new fence
    assert all(not st.fences for st in states.values())


def test_parallel_readers_stop_when_the_consumer_stops_or_a_reader_fails(pg_rig, table):
    insert(pg_rig, table, range(1, 601))
    insert(pg_rig, table, range(1001, 1601), org="310115002")
    pg_rig.caught_up()
    def readers():
        return [t for t in threading.enumerate() if t.name.startswith("hisx-reader-")]

    jobs = [(table, ORG, CursorState()), (table, "310115002", CursorState())]
    it = extract_parallel(source(pg_rig, chunk=100, path="arrow-odbc"), jobs, max_readers=2)
    first = next(it)
    assert first.page is not None and len(readers()) == 2
    it.close()  # the consumer gives up: readers stop, nothing hangs
    assert readers() == []
    serial = extract_parallel(source(pg_rig, chunk=100, path="pyodbc"), jobs, max_readers=2)
    assert next(serial).page is not None and readers() == []  # pyodbc: one reader, this thread
    serial.close()
    pg_rig.stop_standby()
    try:
        got = []
        with pytest.raises(NoHealthyReplica):
            for ev in extract_parallel(source(pg_rig, policy="fail", chunk=100, path="arrow-odbc"),
                                       [(table, ORG, CursorState()),
                                        (table, "310115002", CursorState())], max_readers=2):
                got.append(ev)
        assert got == []
    finally:
        pg_rig.start_standby()
