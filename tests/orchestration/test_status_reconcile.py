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
    monkeypatch.setenv("HISX_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HISX_SOURCE_URL", f"sqlite:///{src}")
    monkeypatch.setenv("HISX_WAREHOUSE_URL", wh_url)
    job = defs.resolve_job_def("nightly_reconciliation")
    with dg.DagsterInstance.ephemeral() as instance:
        res = job.execute_in_process(instance=instance, raise_on_error=False)
    assert not res.success
    with Warehouse.from_url(wh_url) as wh:
        logged = wh.query_df("SELECT tenant, table_name, business_date FROM reconcile_log")
    assert (org, "registrations", day) in set(logged.itertuples(index=False, name=None))


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
