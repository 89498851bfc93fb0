"""Offline detection (center_status) and the nightly reconciliation (hard deletes)."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import date, datetime, timedelta

import dagster as dg
import sqlalchemy as sa

from hisx.connectors.warehouse import Warehouse
from hisx.orchestration.definitions import defs
from hisx.pipelines import flow, reconcile, status
from hisx.simulator import OfflineWindow, simulate
from hisx.simulator.schema import TABLES


def test_classify_counts_only_silence_inside_opening_hours() -> None:
    now = datetime(2026, 8, 31, 12)
    assert status.classify(now - timedelta(minutes=30), now) == "online"
    assert status.classify(now - timedelta(hours=4), now) == "offline"  # silent since 08:00
    evening = now.replace(hour=22)
    assert status.classify(evening - timedelta(hours=4), evening) == "closed"  # since 18:00
    assert status.classify(now - timedelta(hours=4), evening) == "offline"  # silent all day
    # the night does not count: last row 16:50, 40 opening minutes by 08:30, 190 by 11:00
    last = datetime(2026, 8, 30, 16, 50)
    assert status.opening_minutes(last, datetime(2026, 8, 31, 8, 30)) == 40
    assert status.classify(last, datetime(2026, 8, 31, 8, 30)) == "online"
    assert status.classify(last, datetime(2026, 8, 31, 11)) == "offline"
    assert status.classify(last, datetime(2026, 8, 31, 3)) == "closed"
    assert status.classify(None, now) == "unknown"


def test_silent_center_is_flagged_and_hard_delete_is_found(tmp_path, monkeypatch) -> None:
    full = tmp_path / "full.sqlite"
    manifest = simulate(f"sqlite:///{full}", centers=3, months=1, visits_per_month=600, seed=2,
                        start=date(2026, 8, 1), progress=False,
                        offline=[OfflineWindow("gaohang", datetime(2026, 8, 31, 8), 24)])
    gone = min(manifest.counts["registrations"])  # a center went silent at 08:00...
    now = datetime(2026, 8, 31, 14)  # ...and it is 14:00: the source as it stands now
    src = tmp_path / "now.sqlite"
    shutil.copy(full, src)
    with sqlite3.connect(src) as c:
        for t in TABLES:
            c.execute(f"DELETE FROM {t.name} WHERE updated_at > ?", (now.isoformat(" "),))
        silent = c.execute("SELECT org_code FROM registrations GROUP BY org_code "
                           "ORDER BY max(updated_at) LIMIT 1").fetchone()[0]
    engine = sa.create_engine(f"sqlite:///{src}")
    wh_url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    with Warehouse.from_url(wh_url) as wh:
        flow.ensure_warehouse(wh)
        tenants = flow.discover_tenants(engine)
        flow.extract(engine, wh, source="his", tenants=tenants)
        st = {s.tenant: s.status for s in status.refresh_center_status(
            wh, [t.org_code for t in tenants], now=now)}
        assert st[silent] == "offline" and gone in st
        assert sorted(st.values()) == ["offline", "online", "online"]
        stored = wh.query_df("SELECT tenant, status FROM center_status")
        assert dict(zip(stored["tenant"], stored["status"], strict=True)) == st
        codes = [t.org_code for t in tenants]
        assert reconcile.reconcile(engine, wh, "his", codes) == []
    # a hard delete in the source: only the nightly reconciliation can see it
    with sqlite3.connect(src) as c:
        reg_id, org, day = c.execute("SELECT reg_id, org_code, date(reg_time) FROM registrations "
                                     "ORDER BY reg_id LIMIT 1").fetchone()
        c.execute("DELETE FROM registrations WHERE reg_id = ?", (reg_id,))
    with Warehouse.from_url(wh_url) as wh:
        diffs = reconcile.reconcile(engine, wh, "his", codes, log=False)
    engine.dispose()
    assert [(d.tenant, d.table, d.business_date, d.ods_rows - d.source_rows) for d in diffs] \
        == [(org, "registrations", day, 1)]


def _source_at(tmp_path, now: datetime):
    """3 centers, one silent from 2026-08-31 08:00, the source as it stands at ``now``."""
    full = tmp_path / "full.sqlite"
    simulate(f"sqlite:///{full}", centers=3, months=1, visits_per_month=600, seed=2,
             start=date(2026, 8, 1), progress=False,
             offline=[OfflineWindow("gaohang", datetime(2026, 8, 31, 8), 24)])
    src = tmp_path / "now.sqlite"
    shutil.copy(full, src)
    with sqlite3.connect(src) as c:
        for t in TABLES:
            c.execute(f"DELETE FROM {t.name} WHERE updated_at > ?", (now.isoformat(" "),))
        silent = c.execute("SELECT org_code FROM registrations GROUP BY org_code "
                           "ORDER BY max(updated_at) LIMIT 1").fetchone()[0]
        codes = [r[0] for r in c.execute("SELECT org_code FROM organizations ORDER BY 1")]
    return src, silent, codes


def test_freshness_per_center_on_the_source_clock(tmp_path, monkeypatch) -> None:
    """Historical data, wall clock months later: the source's own clock (the newest arrival
    of the other centers) flags exactly the silent center, per partition; the wall clock
    would flag all three."""
    from hisx.orchestration.assets import ods_assets
    from hisx.orchestration.definitions import ensure_centers, range_tags
    from hisx.orchestration.resources import HisxResource

    src, silent, codes = _source_at(tmp_path, datetime(2026, 8, 31, 14))
    wh_url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    monkeypatch.setenv("HISX_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HISX_SOURCE_URL", f"sqlite:///{src}")
    monkeypatch.setenv("HISX_WAREHOUSE_URL", wh_url)
    monkeypatch.delenv("HISX_STATUS_NOW", raising=False)
    monkeypatch.delenv("HISX_STATUS_CLOCK", raising=False)
    asset = next(a for a in ods_assets if a.key == dg.AssetKey(["ods", "registrations"]))

    def freshness(res) -> dict:
        return {e.event_specific_data.partition: e.event_specific_data
                for e in res.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
                and e.event_specific_data.check_name == "freshness"}

    with dg.DagsterInstance.ephemeral() as instance:
        keys = ensure_centers(instance, codes)
        res = dg.materialize([asset], instance=instance, resources={"hisx": HisxResource()},
                             tags=range_tags(sorted(keys)))
        assert res.success  # a warn check never fails the run
        got = freshness(res)
        assert sorted(got) == sorted(codes)
        assert {c for c, v in got.items() if not v.passed} == {silent}
        assert got[silent].severity == dg.AssetCheckSeverity.WARN
        md = got[silent].metadata
        assert md["clock"].value == "source"
        assert md["reference_time"].value.startswith("2026-08-31 1")  # the others' last row
        assert md["silent_opening_minutes"].value > 120
        with Warehouse.from_url(wh_url) as wh:
            stored = wh.query_df("SELECT tenant, status, clock FROM center_status")
        assert dict(zip(stored["tenant"], stored["status"], strict=True)) == {
            c: "offline" if c == silent else "online" for c in codes}
        # a run of another center alone still records the silent center's partition
        other = next(c for c in codes if c != silent)
        res = dg.materialize([asset], instance=instance, resources={"hisx": HisxResource()},
                             partition_key=other)
        assert {c: v.passed for c, v in freshness(res).items()} == {other: True, silent: False}
        # the wall clock (months later) calls every center offline: the reason for the default
        monkeypatch.setenv("HISX_STATUS_CLOCK", "wall")
        res = dg.materialize([asset], instance=instance, resources={"hisx": HisxResource()},
                             tags=range_tags(sorted(keys)))
        assert not any(v.passed for v in freshness(res).values())


def _checksums(wh_url: str) -> dict:
    """Per mart / std table: row count and an order-independent hash of every row."""
    from hisx.marts.runner import MARTS
    from hisx.pipelines.standardize import DATASETS

    out = {}
    with Warehouse.from_url(wh_url) as wh:
        # mart_dq_load_daily is the history of the loads, which did read the deleted rows
        for t in [*(m for m in MARTS if m != "mart_dq_load_daily"),
                  *(f"std_{d}" for d in DATASETS)]:
            cols = [c for c in wh.query_df(f"SELECT * FROM {t} WHERE 1 = 0").columns
                    if c not in ("load_id", "standardized_at", "loaded_at")]
            expr = " || '|' || ".join(f'coalesce(CAST("{c}" AS VARCHAR), \'~\')' for c in cols)
            out[t] = wh.query_df(f"SELECT count(*) AS n, sum(hash({expr})) AS h FROM {t}"
                                 ).iloc[0].tolist()
    return out


def test_nightly_reconciliation_propagates_hard_deletes(tmp_path, monkeypatch) -> None:
    """Rows deleted at the source leave ODS, std, quarantine and the marts (as if never
    there: the marts equal a warehouse built from the source after the delete), recorded
    per center × day in delete_log; a second night changes nothing; a row missing from ODS
    (not a delete) still fails the run."""
    src = tmp_path / "his.sqlite"
    simulate(f"sqlite:///{src}", centers=2, months=1, visits_per_month=400, seed=5,
             start=date(2026, 8, 1), progress=False)
    wh_url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    engine = sa.create_engine(f"sqlite:///{src}")
    with Warehouse.from_url(wh_url) as wh:
        flow.run_all(engine, wh, now=datetime(2026, 9, 1))
        visits = wh.query_df("SELECT tenant, source_key, business_date FROM "
                             "std_outpatient_visit ORDER BY source_key LIMIT 2")
        q = wh.query_df("SELECT tenant, source_key FROM quarantine WHERE dataset = "
                        "'outpatient_visit' ORDER BY source_key LIMIT 1")
    gone = [int(k) for k in visits["source_key"]] + [int(k) for k in q["source_key"]]
    with sqlite3.connect(src) as c:  # 2 standardized visits, 1 quarantined, and a diagnosis
        c.executemany("DELETE FROM registrations WHERE reg_id = ?", [(k,) for k in gone])
        (diag,) = c.execute("SELECT diag_id FROM diagnoses ORDER BY diag_id LIMIT 1").fetchone()
        c.execute("DELETE FROM diagnoses WHERE diag_id = ?", (diag,))
    engine.dispose()
    monkeypatch.setenv("HISX_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HISX_SOURCE_URL", f"sqlite:///{src}")
    monkeypatch.setenv("HISX_WAREHOUSE_URL", wh_url)
    job = defs.resolve_job_def("nightly_reconciliation")
    with dg.DagsterInstance.ephemeral() as instance:
        res = job.execute_in_process(instance=instance, raise_on_error=False)
        assert res.success
        mats = {(m.asset_key.to_user_string(), m.partition) for m in
                res.asset_materializations_for_node("reconcile_all")}
    centers = set(visits["tenant"])
    assert {("ods/registrations", c) for c in centers} <= mats
    assert {("std/outpatient_visit", c) for c in centers} <= mats
    assert {("marts/mart_visits_daily", c) for c in centers} <= mats
    with Warehouse.from_url(wh_url) as wh:
        keys = ", ".join(map(str, gone))
        assert wh.scalar(f"SELECT count(*) FROM ods_registrations WHERE reg_id IN ({keys})") == 0
        assert wh.scalar("SELECT count(*) FROM std_outpatient_visit WHERE source_key IN "
                         f"({keys})") == 0
        assert wh.scalar("SELECT count(*) FROM quarantine WHERE dataset = 'outpatient_visit' "
                         f"AND source_key IN ({keys})") == 0
        assert wh.scalar(f"SELECT count(*) FROM ods_diagnoses WHERE diag_id = {diag}") == 0
        log = wh.query_df("SELECT table_name, sum(ods_rows) AS o, sum(std_rows) AS s, "
                          "sum(quarantine_rows) AS q FROM delete_log GROUP BY table_name")
        got = {r.table_name: (r.o, r.s, r.q) for r in log.itertuples()}
        assert got["registrations"] == (3, 2, 1)
        assert got["diagnoses"][0] == 1 and sum(got["diagnoses"][1:]) == 1
        assert wh.scalar("SELECT count(*) FROM mart_dirty") == 0  # marts re-loaded
    # the marts and std equal a warehouse built from the source after the delete
    fresh = f"duckdb:///{tmp_path / 'fresh.duckdb'}"
    engine = sa.create_engine(f"sqlite:///{src}")
    with Warehouse.from_url(fresh) as wh:
        flow.run_all(engine, wh, now=datetime(2026, 9, 1))
    engine.dispose()
    assert _checksums(wh_url) == _checksums(fresh)
    # idempotent: a second night removes nothing
    with dg.DagsterInstance.ephemeral() as instance:
        assert job.execute_in_process(instance=instance, raise_on_error=False).success
    with Warehouse.from_url(wh_url) as wh:
        assert wh.scalar("SELECT sum(ods_rows) FROM delete_log") == 4
        (lost,) = wh.query_df("SELECT reg_id FROM ods_registrations ORDER BY reg_id DESC "
                              "LIMIT 1")["reg_id"]
        wh.execute(f"DELETE FROM ods_registrations WHERE reg_id = {int(lost)}")
    with dg.DagsterInstance.ephemeral() as instance:  # missing from ODS is not a delete
        assert not job.execute_in_process(instance=instance, raise_on_error=False).success
    with Warehouse.from_url(wh_url) as wh:
        assert wh.scalar("SELECT sum(ods_rows) FROM delete_log") == 4
