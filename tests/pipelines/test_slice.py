"""The first slice end to end on the embedded default: simulator → ODS → std → marts.

Conservation with defects on, idempotent re-runs, cursor resume after new rows, and the
visit marts equal to an independent pandas computation over the standardized rows.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from hisx.connectors.warehouse import Warehouse
from hisx.pipelines import flow
from hisx.simulator import append_activity, simulate

SLICE = ("person", "outpatient_visit")


def run_once(engine: sa.Engine, wh: Warehouse) -> dict[str, list[flow.StdStats]]:
    tenants = flow.discover_tenants(engine)
    flow.extract(engine, wh, source="his", tenants=tenants, chunk_rows=700)
    stats = {d: flow.standardize_tenants(wh, d, tenants, now=datetime(2027, 1, 1))
             for d in SLICE}
    flow.build_marts(wh)
    return stats


def table_digest(wh: Warehouse, table: str, order: str) -> str:
    df = wh.query_df(f"SELECT * FROM {table} ORDER BY {order}")
    return hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slice")
    url = f"sqlite:///{tmp / 'his.sqlite'}"
    manifest = simulate(url, centers=3, months=1, visits_per_month=1500, seed=7,
                        start=date(2026, 8, 1), progress=False)
    engine = sa.create_engine(url)
    wh = Warehouse.from_url(f"duckdb:///{tmp / 'wh.duckdb'}")
    flow.ensure_warehouse(wh)
    first = run_once(engine, wh)
    yield {"url": url, "engine": engine, "wh": wh, "manifest": manifest, "first": first}
    wh.close()
    engine.dispose()


def test_conservation_with_defects_on(world) -> None:
    for stats in world["first"].values():
        assert len(stats) == 3
        for s in stats:
            assert s.rows_in > 0
            assert s.rows_in == s.standardized + s.quarantined + s.deduplicated, s
    visits = world["first"]["outpatient_visit"]
    assert sum(s.quarantined for s in visits) > 0, "defects on: some visits must be quarantined"
    assert sum(s.deduplicated for s in visits) > 0, "duplicate registrations must be deduplicated"
    src = pd.read_sql("SELECT org_code, count(*) n FROM registrations GROUP BY org_code",
                      world["engine"]).set_index("org_code")["n"]
    for s in visits:
        assert s.rows_in == src[s.tenant]


def test_quarantine_keeps_every_reason_and_the_original(world) -> None:
    wh = world["wh"]
    q = wh.query_df("SELECT * FROM quarantine WHERE dataset = 'outpatient_visit'")
    assert len(q) > 0
    assert q["original"].str.startswith("{").all()
    assert q["reasons"].str.contains("unmapped:dept_code:").any()
    counts = wh.query_df("SELECT dataset, tenant, count(*) n FROM quarantine "
                         "GROUP BY dataset, tenant")
    logged = wh.query_df("SELECT dataset, tenant, sum(quarantined) n FROM std_log "
                         "GROUP BY dataset, tenant")
    merged = counts.merge(logged, on=["dataset", "tenant"], suffixes=("_q", "_log"))
    assert (merged["n_q"] == merged["n_log"]).all()


def test_marts_equal_independent_pandas(world) -> None:
    wh = world["wh"]
    std = wh.query_df("SELECT * FROM std_outpatient_visit")
    live = std[(std["status_code"] == "1") & (~std["is_deleted"].astype(bool))]
    expected = live.groupby(["tenant", "business_date"]).size()
    daily = wh.query_df("SELECT tenant, period_start, visits FROM mart_visits_daily")
    got = daily.set_index(["tenant", "period_start"])["visits"]
    got = got[got > 0]
    expected.index = expected.index.set_levels(
        [expected.index.levels[0], pd.to_datetime(expected.index.levels[1]).date], level=[0, 1])
    got.index = got.index.set_levels(
        [got.index.levels[0], pd.to_datetime(got.index.levels[1]).date], level=[0, 1])
    assert expected.sort_index().to_dict() == got.sort_index().to_dict()
    monthly = wh.query_df("SELECT tenant, sum(visits) v, sum(emergency) e FROM "
                          "mart_visits_monthly GROUP BY tenant").set_index("tenant")
    assert monthly["v"].to_dict() == live.groupby("tenant").size().to_dict()
    assert monthly["e"].to_dict() == (
        live[live["visit_type_code"] == "2"].groupby("tenant").size().to_dict())


def test_rerun_is_idempotent(world) -> None:
    wh, engine = world["wh"], world["engine"]
    before = {t: table_digest(wh, t, o) for t, o in [
        ("mart_visits_daily", "tenant, period_start"),
        ("mart_visits_monthly", "tenant, period_start"),
        ("std_outpatient_visit", "tenant, source_key")]}
    q_before = wh.scalar("SELECT count(*) FROM quarantine")
    stats = run_once(engine, wh)
    assert all(s.rows_in == 0 for ss in stats.values() for s in ss)
    after = {t: table_digest(wh, t, o) for t, o in [
        ("mart_visits_daily", "tenant, period_start"),
        ("mart_visits_monthly", "tenant, period_start"),
        ("std_outpatient_visit", "tenant, source_key")]}
    assert before == after
    assert wh.scalar("SELECT count(*) FROM quarantine") == q_before


def test_cursor_resumes_after_new_rows(world) -> None:
    wh, engine = world["wh"], world["engine"]
    n_before = wh.scalar("SELECT count(*) FROM ods_registrations")
    rv_before = wh.scalar("SELECT max(row_version) FROM ods_registrations")
    append_activity(world["url"], start=datetime(2026, 9, 1, 8), hours=10, seed=8,
                    visits_per_month=1500)
    src_new = pd.read_sql(sa.text("SELECT count(*) n FROM registrations WHERE row_version > :r"),
                          engine, params={"r": int(rv_before)})["n"][0]
    assert src_new > 0
    stats = run_once(engine, wh)
    visits = stats["outpatient_visit"]
    assert sum(s.rows_in for s in visits) == src_new
    for s in visits:
        assert s.rows_in == s.standardized + s.quarantined + s.deduplicated
    n_src = pd.read_sql("SELECT count(*) n FROM registrations", engine)["n"][0]
    assert wh.scalar("SELECT count(*) FROM ods_registrations") == n_src >= n_before
    sept = wh.scalar("SELECT sum(visits) FROM mart_visits_monthly WHERE period_start = :d",
                     {"d": date(2026, 9, 1)})
    assert sept and sept > 0
