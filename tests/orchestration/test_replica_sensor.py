"""The source sensor and the replica-health sensor on the real rig: a PostgreSQL source
reached through unixODBC/psqlODBC, primary + hot standby. The high-water marks are read on
the replica the routing policy picks (a paused standby hides rows the primary already has),
and under the ``wait`` policy a stopped standby pauses the source until it is back."""

from __future__ import annotations

import json
import uuid

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from hisx.connectors.source.config import parse_source
from hisx.connectors.source.pgsetup import install_row_version
from hisx.orchestration.sensors import health_sensor, source_tick
from hisx.orchestration.sources import read_health, source_named

pytestmark = [pytest.mark.standby, pytest.mark.odbc]
A, B = "310115001", "310115002"


@pytest.fixture()
def rig(pg_rig):
    return pg_rig


def _insert(rig, table, org: str, ids) -> None:
    rig.primary(
        f"insert into {table.fullname} (reg_id, org_code, visit_no, patient_id, dept_code, "
        "doctor_code, reg_time, visit_kind, visit_type, reg_fee, status, is_deleted, "
        "updated_at, row_version) select g, %s, 'V' || g, g, 'NK01', 'D1', "
        "timestamp '2026-08-01 08:00' + g * interval '10 minute', '初诊', '门诊', 10, '正常', "
        "0, now(), 0 from unnest(%s::bigint[]) g", (org, list(ids)))


@pytest.fixture()
def source(rig, tmp_path, monkeypatch):
    raw = {
        "dialect": "postgresql", "schema": f"s_{uuid.uuid4().hex[:8]}",
        "tables": ["registrations"],
        "primary": {"name": "primary", "odbc": rig.env["HISX_PG_PRIMARY_ODBC"]},
        "replicas": [{"name": "standby", "odbc": rig.env["HISX_PG_STANDBY_ODBC"]}],
        "tenants": [{"org_code": A, "vendor": "vendor_a"}, {"org_code": B, "vendor": "vendor_b"}],
        "policies": {"on_no_healthy_replica": "wait", "chunk_rows": 500},
    }
    table = parse_source("his_ag", raw).table("registrations")
    eng = sa.create_engine(rig.env["HISX_PG_PRIMARY_URL"])
    install_row_version(eng, [table])
    eng.dispose()
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump({"sources": {"his_ag": raw}}, allow_unicode=True),
                    encoding="utf-8")
    monkeypatch.setenv("HISX_SOURCES", str(path))
    monkeypatch.setenv("HISX_HOME", str(tmp_path / "home"))
    return source_named("his_ag"), table


def _marks(rig, table) -> dict[str, int]:
    """max(row_version) per center on the primary (the version sequence is shared); a
    configured center without rows is 0 in the cursor."""
    return {A: 0, B: 0} | {o: int(m) for o, m in rig.primary(
        f"select org_code, max(row_version) from {table.fullname} group by org_code")}


def _centers(result) -> list[str]:
    return sorted(r.partition_key for r in result.run_requests)


def test_source_sensor_reads_marks_on_the_standby(rig, source) -> None:
    src, table = source
    _insert(rig, table, A, range(1, 301))
    rig.caught_up()
    with dg.DagsterInstance.ephemeral() as instance:
        first = source_tick(src, None, instance)
        assert _centers(first) == [A]
        assert json.loads(first.cursor) == {"registrations": _marks(rig, table)}
        assert set(instance.get_dynamic_partitions("center")) == {A, B}
        assert source_tick(src, first.cursor, instance).run_requests == []  # nothing new
        rig.standby("select pg_wal_replay_pause()")
        try:
            _insert(rig, table, B, range(5001, 5051))
            # the primary has B's rows; the standby has not replayed them: no run yet
            assert rig.primary(f"select count(*) from {table.fullname} where org_code = %s",
                               (B,))[0][0] == 50
            assert source_tick(src, first.cursor, instance).run_requests == []
        finally:
            rig.standby("select pg_wal_replay_resume()")
        rig.caught_up()
        second = source_tick(src, first.cursor, instance)
        assert _centers(second) == [B]  # exactly the changed center
        req = second.run_requests[0]
        assert req.tags["hisx/source"] == "his_ag" and req.run_key.startswith(f"his_ag:{B}:")
        assert json.loads(second.cursor)["registrations"] == _marks(rig, table)


def test_wait_policy_pauses_the_source_while_the_standby_is_down(rig, source) -> None:
    src, table = source
    _insert(rig, table, A, range(1, 11))
    rig.caught_up()
    sensor = health_sensor(src)
    with dg.DagsterInstance.ephemeral() as instance:
        ctx = dg.build_sensor_context(instance=instance)
        assert "healthy: standby=ok" in sensor.evaluate_tick(ctx).skip_message
        assert read_health("his_ag")["paused"] is False
        rig.stop_standby()
        try:
            tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
            assert tick.skip_message.startswith("PAUSED: no healthy replica, policy wait")
            state = read_health("his_ag")
            assert state["paused"] and state["replicas"][0]["healthy"] is False
            _insert(rig, table, A, range(11, 21))  # new rows on the primary: still no run
            paused = source_tick(src, None, instance)
            assert isinstance(paused, dg.SkipReason) and "paused" in paused.skip_message
        finally:
            rig.start_standby()
        rig.caught_up()
        tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
        assert "healthy: standby=ok" in tick.skip_message
        assert read_health("his_ag")["paused"] is False
        resumed = source_tick(src, None, instance)
        assert _centers(resumed) == [A]
        assert json.loads(resumed.cursor) == {"registrations": _marks(rig, table)}


def test_nightly_reconciliation_removes_hard_deletes_read_on_the_standby(rig, source, tmp_path,
                                                                         monkeypatch) -> None:
    from hisx.connectors.warehouse import Warehouse
    from hisx.orchestration.sensors import reconcile_source
    from hisx.pipelines.extract_sources import extract_configured

    src, table = source
    _insert(rig, table, A, range(1, 201))
    rig.caught_up()
    with Warehouse.from_url(f"duckdb:///{tmp_path / 'wh.duckdb'}") as wh:
        from hisx.pipelines.flow import ensure_warehouse

        ensure_warehouse(wh)
        assert sum(r.rows_read for r in extract_configured(wh, src.cfg)) == 200
        rig.primary(f"delete from {table.fullname} where reg_id in (7, 8, 150)")
        rig.caught_up()
        out = reconcile_source(src, wh)
        assert sum(r.ods_rows for r in out["removed"]) == 3 and out["remaining"] == []
        assert wh.scalar("SELECT count(*) FROM ods_registrations") == 197
        assert wh.scalar("SELECT sum(ods_rows) FROM delete_log WHERE tenant = :a",
                         {"a": A}) == 3
        assert reconcile_source(src, wh)["removed"] == []  # idempotent


def test_incremental_marks_equal_full_marks_for_moved_centers(tmp_path) -> None:
    """``high_waters(since=…)`` with the previous tick's lowest mark finds every moved center
    with its exact mark, and nothing for the idle ones (SQLite source, three centers)."""
    from datetime import date, datetime

    from hisx.orchestration.sensors import _since
    from hisx.orchestration.sources import high_waters
    from hisx.simulator import append_activity, simulate
    from hisx.simulator.schema import TABLES

    url = f"sqlite:///{tmp_path / 'his.sqlite'}"
    simulate(url, centers=3, months=1, visits_per_month=300, seed=5, start=date(2026, 8, 1),
             progress=False)
    eng = sa.create_engine(url)
    centers = [r[0] for r in eng.connect().execute(sa.text(
        "select org_code from organizations order by org_code"))]
    before = high_waters(eng, TABLES)
    prev = {t: dict.fromkeys(centers, 0) | m for t, m in before.items()}
    def changed(marks: dict) -> dict:
        return {t: {c: v for c, v in m.items() if v > prev[t].get(c, 0)} for t, m in marks.items()}

    idle = high_waters(eng, TABLES, since=_since(prev, centers))
    assert changed(idle) == {t.name: {} for t in TABLES}
    # only rows above the lowest previous mark were read: fewer centers than the full answer
    assert sum(map(len, idle.values())) < sum(map(len, before.values()))
    append_activity(url, start=datetime(2026, 9, 1, 9), hours=1, seed=9, centers=1)
    full = high_waters(eng, TABLES)
    part = high_waters(eng, TABLES, since=_since(prev, centers))
    assert changed(part) == changed(full)
    assert {c for m in changed(part).values() for c in m} == {centers[0]}
    for t, m in part.items():  # what it returns is exact
        assert all(full[t][c] == v for c, v in m.items())
    eng.dispose()
