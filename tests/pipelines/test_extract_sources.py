"""Live: configured sources -> SourceExtractor (standby routing, safe bound, lag) -> DuckDB
ODS, with the cursor state landed in the same warehouse transaction as the rows."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal

import psycopg
import pytest
import sqlalchemy as sa
import yaml

from hisx.connectors.source.config import SourceConfigError, parse_source
from hisx.connectors.source.extract import NoHealthyReplica
from hisx.connectors.source.pgsetup import install_row_version
from hisx.connectors.warehouse import Warehouse
from hisx.pipelines import extract_sources as xs
from hisx.pipelines import ods
from hisx.simulator import schema

A, B = "310115001", "310115002"


@pytest.fixture()
def src(pg_rig):
    """A fresh source schema on the primary: its raw sources entry and its table."""
    name = f"s_{uuid.uuid4().hex[:8]}"

    def raw(policy="wait", chunk=1000, path="pyodbc", **pol):
        return {
            "dialect": "postgresql", "schema": name, "tables": ["registrations"],
            "primary": {"name": "primary", "odbc": pg_rig.env["HISX_PG_PRIMARY_ODBC"]},
            "replicas": [{"name": "standby", "odbc": pg_rig.env["HISX_PG_STANDBY_ODBC"]}],
            "tenants": [{"org_code": A, "vendor": "v1"}, {"org_code": B, "vendor": "v2"}],
            "policies": {"on_no_healthy_replica": policy, "chunk_rows": chunk,
                         "extraction_path": path, "wait_poll_s": 0.2, "wait_timeout_s": 20, **pol},
        }

    table = parse_source("x", raw()).table("registrations")
    eng = sa.create_engine(pg_rig.env["HISX_PG_PRIMARY_URL"])
    install_row_version(eng, [table])
    eng.dispose()
    return raw, table


@pytest.fixture()
def wh(tmp_path):
    w = Warehouse.from_url(f"duckdb:///{tmp_path / 'wh.duckdb'}")
    yield w
    w.close()


def insert(rig, t, ids, org=A, conn=None):
    sql = (f"insert into {t.fullname} (reg_id, org_code, visit_no, patient_id, dept_code, doctor_code,"
           " reg_time, visit_kind, visit_type, reg_fee, status, is_deleted, updated_at, row_version)"
           " select g, %s, '鹤沙航城' || g, g, '内科', 'D1', timestamp '2024-03-01 08:00:00.123456'"
           " + g * interval '1 minute', '初诊', '门诊', 12.34 + g, '正常', 0, now(), 0"
           " from unnest(%s::bigint[]) g")
    args = (org, list(ids))
    return conn.execute(sql, args) if conn is not None else rig.primary(sql, args)


def ods_ids(wh, org=None) -> list[int]:
    where = " WHERE org_code = :o" if org else ""
    t = wh.query_arrow(f"SELECT reg_id FROM ods_registrations{where} ORDER BY reg_id",
                       {"o": org} if org else None)
    return t.column(0).to_pylist()


def state_rows(wh) -> dict[str, dict]:
    t = wh.query_arrow("SELECT tenant, state_json FROM ods_cursor_state ORDER BY tenant")
    return {r["tenant"]: json.loads(r["state_json"]) for r in t.to_pylist()}


@pytest.mark.standby
@pytest.mark.odbc
@pytest.mark.parametrize("path", ["pyodbc", "arrow-odbc"])
def test_sources_file_lands_rows_from_the_standby_and_rerun_is_noop(pg_rig, src, wh, tmp_path, path):
    raw, t = src
    insert(pg_rig, t, range(1, 2501), A)
    insert(pg_rig, t, range(5001, 5301), B)
    pg_rig.caught_up()
    f = tmp_path / "sources.yaml"
    f.write_text(yaml.safe_dump({"sources": {"his": raw(path=path)}}, allow_unicode=True),
                 encoding="utf-8")

    res = xs.extract_sources_file(wh, f)
    assert [(r.tenant, r.rows_read, r.rows_changed) for r in res] == [(A, 2500, 2500), (B, 300, 300)]
    top = pg_rig.primary(f"select max(row_version) from {t.fullname}")[0][0]
    for r in res:
        m = r.metadata()
        assert (m["endpoint"], m["used_primary"], m["reader_in_recovery"], m["path"]) == (
            "standby", False, True, path)
        assert m["lag"] is not None and m["lag"] >= 0 and m["upper_bound"] == top
        assert m["rv_to"] == top and m["pending_fences"] == 0
    assert res[0].pages == 3 and res[0].load_id == res[1].load_id
    assert ods_ids(wh, A) == list(range(1, 2501)) and ods_ids(wh, B) == list(range(5001, 5301))
    row = wh.query_arrow("SELECT * FROM ods_registrations WHERE reg_id = 7").to_pylist()[0]
    assert row["reg_fee"] == Decimal("19.34") and row["visit_no"] == "鹤沙航城7"
    assert row["reg_time"] == dt.datetime(2024, 3, 1, 8, 7, 0, 123456)
    assert {k: v["rv"] for k, v in state_rows(wh).items()} == {A: top, B: top}
    assert ods.get_cursor(wh, "his", "registrations", A) == top
    n_log = wh.scalar("SELECT count(*) FROM load_log")
    assert n_log == 2

    again = xs.extract_sources_file(wh, f)  # nothing new: lands nothing, logs nothing
    assert [(r.rows_read, r.rows_changed, r.rv_from, r.rv_to) for r in again] == [(0, 0, top, top)] * 2
    assert wh.scalar("SELECT count(*) FROM ods_registrations") == 2800
    assert wh.scalar("SELECT count(*) FROM load_log") == n_log

    insert(pg_rig, t, range(2501, 2511), A)  # new rows + an update (new row_version)
    pg_rig.primary(f"update {t.fullname} set status = '退号' where reg_id = 3")
    pg_rig.caught_up()
    third = xs.extract_sources_file(wh, f, only=["his"])
    assert [(r.tenant, r.rows_read) for r in third] == [(A, 11), (B, 0)]
    assert wh.scalar("SELECT count(*) FROM ods_registrations") == 2810
    assert wh.scalar("SELECT status FROM ods_registrations WHERE reg_id = 3") == "退号"
    part = xs.extract_sources_file(wh, f, tenants=[B])  # one tenant partition
    assert [(r.tenant, r.rows_read, r.endpoint) for r in part] == [(B, 0, "standby")]


@pytest.mark.standby
@pytest.mark.odbc
def test_standby_stopped_under_primary_policy_records_used_primary(pg_rig, src, wh):
    raw, t = src
    insert(pg_rig, t, range(1, 301), A)
    pg_rig.caught_up()
    cfg = parse_source("his", raw(policy="primary"))
    pg_rig.stop_standby()
    try:
        res = xs.extract_configured(wh, cfg)
    finally:
        pg_rig.start_standby()
    ra, rb = res
    assert (ra.endpoint, ra.used_primary, ra.reader_in_recovery, ra.rows_read) == ("primary", True, False, 300)
    assert ra.lag is None and any(s.startswith("standby:") for s in ra.skipped)
    assert rb.used_primary and rb.rows_read == 0
    assert ods_ids(wh, A) == list(range(1, 301))
    logged = wh.query_arrow("SELECT endpoint, rows_read FROM load_log").to_pylist()
    assert logged == [{"endpoint": "primary", "rows_read": 300}]
    pg_rig.caught_up()
    back = xs.extract_configured(wh, cfg)  # standby back: routed there again, nothing new
    assert [(r.endpoint, r.used_primary, r.rows_read) for r in back] == [("standby", False, 0)] * 2


@pytest.mark.standby
@pytest.mark.odbc
def test_no_healthy_replica_under_fail_policy_keeps_what_was_landed(pg_rig, src, wh):
    raw, t = src
    insert(pg_rig, t, range(1, 51), A)
    pg_rig.caught_up()
    cfg = parse_source("his", raw(policy="fail"))
    pg_rig.stop_standby()
    try:
        with pytest.raises(NoHealthyReplica, match="no healthy replica"):
            xs.extract_configured(wh, cfg)
    finally:
        pg_rig.start_standby()
    assert ods_ids(wh) == [] and ods.get_cursor(wh, "his", "registrations", A) == 0
    pg_rig.caught_up()
    assert sum(r.rows_read for r in xs.extract_configured(wh, cfg)) == 50


@pytest.mark.standby
@pytest.mark.odbc
def test_open_transaction_fence_is_persisted_and_later_settled(pg_rig, src, wh, tmp_path,
                                                                caplog):
    raw, t = src
    cfg = parse_source("his", raw())
    insert(pg_rig, t, range(1, 11), A)
    pg_rig.caught_up()
    assert xs.extract_configured(wh, cfg)[0].rows_read == 10
    with psycopg.connect(pg_rig.primary_dsn) as long_txn:
        insert(pg_rig, t, [900], A, conn=long_txn)  # row_version taken now, committed later
        insert(pg_rig, t, range(11, 21), A)
        pg_rig.caught_up()
        with caplog.at_level("WARNING", logger=xs.__name__):
            held = xs.extract_configured(wh, cfg)[0]
        assert held.rows_read == 0 and held.rv_to == held.rv_from and held.pending_fences >= 1
        # the fence is cluster-wide (xids): every center's read of the table waits, and says so
        assert "read(s) stopped at an unsettled commit fence (" in caplog.text
        assert f"registrations/{A}" in caplog.text
        assert state_rows(wh)[A]["fences"]  # the unsettled fence is in the warehouse
        long_txn.commit()
    pg_rig.caught_up()
    wh.close()  # a new process: the state comes back from the warehouse file
    wh2 = Warehouse.from_url(f"duckdb:///{tmp_path / 'wh.duckdb'}")
    try:
        done = xs.extract_configured(wh2, cfg)[0]
        assert done.rows_read == 11 and ods_ids(wh2, A) == [*range(1, 21), 900]
        assert state_rows(wh2)[A]["fences"] == []
    finally:
        wh2.close()


@pytest.mark.standby
@pytest.mark.odbc
@pytest.mark.parametrize(("land_rows", "table_rows"), [(1, 1), (10**6, 1), (10**6, 10**6)],
                         ids=["txn-per-page", "pages-grouped", "pages-buffered"])
def test_failed_landing_keeps_cursor_and_rows_together(pg_rig, src, wh, monkeypatch,
                                                       land_rows, table_rows):
    """The warehouse fails while landing the third page (its rows land, then the error):
    whatever the grouping of pages into transactions and of pages into one upsert, rows and
    cursors roll back together, and the rerun reads exactly what did not land."""
    raw, t = src
    insert(pg_rig, t, range(1, 451), A)
    pg_rig.caught_up()
    cfg = parse_source("his", raw(chunk=100))
    real, calls = ods.upsert_by_center, []
    monkeypatch.setattr(xs, "LAND_TXN_ROWS", land_rows)
    monkeypatch.setattr(xs, "LAND_TABLE_ROWS", table_rows)

    def upsert_failing_on_third_page(wh_, table, batch, load_id):
        calls.append(batch.num_rows)
        n = real(wh_, table, batch, load_id)  # lands inside the page transaction ...
        if sum(calls) > 200:
            raise RuntimeError("warehouse died mid-page")  # ... which then rolls back
        return n

    monkeypatch.setattr(ods, "upsert_by_center", upsert_failing_on_third_page)
    with pytest.raises(RuntimeError, match="mid-page"):
        xs.extract_configured(wh, cfg)
    if land_rows == 1:  # a transaction per page: two pages landed, the third rolled back
        assert ods_ids(wh, A) == list(range(1, 201))
        page2_rv = pg_rig.primary(
            f"select row_version from {t.fullname} where reg_id = 200")[0][0]
        assert ods.get_cursor(wh, "his", "registrations", A) == page2_rv == \
            state_rows(wh)[A]["rv"]
    else:  # the pages shared one transaction: all rolled back, rows and cursor alike
        assert calls == ([100, 100, 100] if table_rows == 1 else [450])
        assert ods_ids(wh, A) == []
        assert ods.get_cursor(wh, "his", "registrations", A) == 0
    monkeypatch.setattr(ods, "upsert_by_center", real)
    rest = xs.extract_configured(wh, cfg)[0]
    landed = 200 if land_rows == 1 else 0
    assert rest.rows_read == 450 - landed and rest.rows_changed == 450 - landed  # 0 lost/twice
    assert ods_ids(wh, A) == list(range(1, 451))


def test_url_source_uses_the_table_reader(tmp_path, wh):
    db = tmp_path / "demo.sqlite"
    eng = sa.create_engine(f"sqlite:///{db}")
    schema.metadata.create_all(eng, tables=[schema.registrations])
    rows = [{"reg_id": i, "org_code": A if i % 2 else B, "visit_no": f"V{i}", "patient_id": i,
             "dept_code": "内科", "doctor_code": "D1", "reg_time": dt.datetime(2024, 3, 1, 8),
             "visit_kind": "初诊", "visit_type": "门诊", "reg_fee": Decimal("12.30"),
             "status": "正常", "is_deleted": 0, "updated_at": dt.datetime(2024, 3, 1, 9),
             "row_version": i} for i in range(1, 21)]
    with eng.begin() as c:
        c.execute(schema.registrations.insert(), rows)
    eng.dispose()
    cfg = parse_source("demo", {"url": f"sqlite:///{db}", "tables": ["registrations"],
                                "tenants": [{"org_code": A}, {"org_code": B}]})
    only_b = xs.extract_configured(wh, cfg, tenants=[B])  # one partition
    assert [(r.tenant, r.rows_read) for r in only_b] == [(B, 10)]
    res = xs.extract_configured(wh, cfg)
    assert [(r.tenant, r.rows_read, r.path, r.upper_bound) for r in res] == [
        (A, 10, "sqlalchemy", 20), (B, 0, "sqlalchemy", 20)]
    assert [r.rows_read for r in xs.extract_configured(wh, cfg)] == [0, 0]
    assert wh.scalar("SELECT count(*) FROM ods_registrations") == 20


def test_pages_land_with_one_duckdb_thread_then_it_is_restored(tmp_path, wh, monkeypatch):
    """Extraction keeps DuckDB to HISX_DUCKDB_EXTRACT_THREADS (1) while it lands pages."""
    db = tmp_path / "one.sqlite"
    eng = sa.create_engine(f"sqlite:///{db}")
    schema.metadata.create_all(eng, tables=[schema.registrations])
    with eng.begin() as c:
        c.execute(schema.registrations.insert(), [{
            "reg_id": 1, "org_code": A, "visit_no": "V1", "patient_id": 1, "dept_code": "内科",
            "doctor_code": "D1", "reg_time": dt.datetime(2024, 3, 1, 8), "visit_kind": "初诊",
            "visit_type": "门诊", "reg_fee": Decimal("12.30"), "status": "正常",
            "is_deleted": 0, "updated_at": dt.datetime(2024, 3, 1, 9), "row_version": 1}])
    eng.dispose()
    cfg = parse_source("one", {"url": f"sqlite:///{db}", "tables": ["registrations"],
                               "tenants": [{"org_code": A}]})
    seen: list[int] = []
    real = ods.upsert_by_center

    def upsert(w, *a, **kw):
        seen.append(w.scalar("SELECT current_setting('threads')"))
        return real(w, *a, **kw)

    monkeypatch.setattr(ods, "upsert_by_center", upsert)
    wh.execute("SET threads = 2")
    assert xs.extract_configured(wh, cfg)[0].rows_read == 1
    assert seen and set(seen) == {1}
    assert wh.scalar("SELECT current_setting('threads')") == 2
    monkeypatch.setenv("HISX_DUCKDB_EXTRACT_THREADS", "none")
    with pytest.raises(ValueError, match="HISX_DUCKDB_EXTRACT_THREADS"):
        xs.extract_configured(wh, cfg)


def test_configuration_errors_are_specific(wh):
    cfg = parse_source("demo", {"url": "sqlite:///x.sqlite", "tables": ["registrations"]})
    with pytest.raises(SourceConfigError, match="source 'demo': no tenants configured"):
        xs.extract_configured(wh, cfg)
    cfg = parse_source("demo", {"url": "sqlite:///x.sqlite", "tables": ["registrations"],
                                "tenants": [{"org_code": A}]})
    with pytest.raises(SourceConfigError, match=r"does not declare tables \['charges'\]"):
        xs.extract_configured(wh, cfg, tables=["charges"])
    with pytest.raises(SourceConfigError, match=r"source 'demo' does not serve tenants \['X'\]"):
        xs.extract_configured(wh, cfg, tenants=[A, "X"])
    with pytest.raises(SourceConfigError, match=r"sources file has no sources \['nope'\]"):
        xs.extract_sources_file(wh, {"sources": {"demo": {"url": "sqlite:///x.sqlite"}}},
                                only=["nope"])


def test_cursor_states_round_trip_and_the_plain_cursor_wins(wh):
    """Cursors are read for every (table, tenant) at once and written for many at once; a
    plain ``ods_cursor`` moved by hand (a reset) wins over the saved state, whose fences
    below it are dropped."""
    from hisx.connectors.source.extract import CursorState

    xs.ensure_state(wh)
    states = {("registrations", A): CursorState(40, [[41, 45], [50, 52]]),
              ("registrations", B): CursorState(7), ("patients", A): CursorState(3)}
    with wh.transaction():
        xs.save_states(wh, "his", states)
    assert xs.load_states(wh, "his") == states
    assert xs.load_states(wh, "other") == {}
    with wh.transaction():  # a second save replaces, never duplicates
        xs.save_states(wh, "his", {("registrations", B): CursorState(9)})
    assert wh.scalar("SELECT count(*) FROM ods_cursor WHERE tenant = :t", {"t": B}) == 1
    assert xs.load_states(wh, "his")[("registrations", B)] == CursorState(9)
    ods.set_cursor(wh, "his", "registrations", A, 48)
    assert xs.load_states(wh, "his")[("registrations", A)] == CursorState(48, [[50, 52]])
