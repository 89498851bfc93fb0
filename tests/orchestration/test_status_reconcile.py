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


def test_classify_respects_opening_hours() -> None:
    now = datetime(2026, 8, 31, 12)
    assert status.classify(now - timedelta(minutes=30), now) == "online"
    assert status.classify(now - timedelta(hours=4), now) == "offline"
    assert status.classify(now - timedelta(hours=4), now.replace(hour=22)) == "closed"
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
