"""Quarantine replay: after a map fix, exactly the affected rows move to std, once."""

from __future__ import annotations

import json
import shutil
from datetime import date, datetime

import pytest
import sqlalchemy as sa

from hisx.connectors.warehouse import Warehouse
from hisx.pipelines import flow, quarantine
from hisx.simulator import simulate
from hisx.standards.maps import MAPS_DIR


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quarantine")
    url = f"sqlite:///{tmp / 'his.sqlite'}"
    simulate(url, centers=3, months=1, visits_per_month=1200, seed=11, start=date(2026, 8, 1),
             defect_rate=0.05, progress=False)
    engine = sa.create_engine(url)
    wh = Warehouse.from_url(f"duckdb:///{tmp / 'wh.duckdb'}")
    flow.ensure_warehouse(wh)
    tenants = flow.discover_tenants(engine)
    flow.extract(engine, wh, source="his", tenants=tenants)
    flow.standardize_tenants(wh, "outpatient_visit", tenants, now=datetime(2027, 1, 1))
    flow.build_marts(wh)
    yield {"wh": wh, "tenants": tenants, "tmp": tmp}
    wh.close()
    engine.dispose()


def _unmapped(wh: Warehouse) -> tuple[str, str, set[int], set[int]]:
    """(tenant, code, keys with only that reason, keys with that reason and others)."""
    q = wh.query_df("SELECT tenant, source_key, reasons FROM quarantine "
                    "WHERE dataset = 'outpatient_visit'")
    q["r"] = q["reasons"].map(json.loads)
    hit = q[q["r"].map(lambda rs: any(r.startswith("unmapped:dept_code:") for r in rs))]
    assert len(hit), "the simulator's unmapped_dept defect must be quarantined"
    tenant = hit["tenant"].iloc[0]
    code = next(r for r in hit["r"].iloc[0] if r.startswith("unmapped:dept_code:")).split(":")[2]
    mine = q[(q["tenant"] == tenant) & q["r"].map(lambda rs: f"unmapped:dept_code:{code}" in rs)]
    only = set(mine.loc[mine["r"].map(len) == 1, "source_key"].astype(int))
    more = set(mine.loc[mine["r"].map(len) > 1, "source_key"].astype(int))
    return tenant, code, only, more


def test_list_and_unmapped_report(world) -> None:
    wh = world["wh"]
    assert len(quarantine.list_rows(wh, "outpatient_visit")) > 0
    assert "original" not in quarantine.list_rows(wh).columns  # personal data stays inside
    rep = quarantine.unmapped_report(wh)
    tenant, code, only, more = _unmapped(wh)
    row = rep[(rep["tenant"] == tenant) & (rep["field"] == "dept_code") & (rep["code"] == code)]
    assert int(row["rows"].iloc[0]) == len(only) + len(more)
    assert row["first_seen"].iloc[0] <= row["last_seen"].iloc[0]


def test_replay_moves_exactly_the_fixed_rows_once(world, monkeypatch) -> None:
    wh, tmp = world["wh"], world["tmp"]
    tenant_code, code, only, more = _unmapped(wh)
    tenant = next(t for t in world["tenants"] if t.org_code == tenant_code)
    std_before = wh.scalar("SELECT count(*) FROM std_outpatient_visit WHERE tenant = :t",
                           {"t": tenant_code})
    q_before = wh.scalar("SELECT count(*) FROM quarantine WHERE dataset = 'outpatient_visit' "
                         "AND tenant = :t", {"t": tenant_code})
    # nothing fixed yet: replay moves nothing and changes nothing
    st0 = quarantine.replay(wh, "outpatient_visit", tenant, now=datetime(2027, 1, 1))
    assert st0.moved == 0 and st0.conserved and st0.replayed == q_before
    # the fix: a reviewed center override mapping the code to 全科 (02)
    maps = tmp / "maps"
    shutil.copytree(MAPS_DIR, maps)
    center = maps / "centers" / tenant_code
    center.mkdir(parents=True, exist_ok=True)
    (center / "department.csv").write_text(
        "local_code,standard_code,code_system,note\n"
        f"{code},02,NHC.ZLKM,reviewed: retired local code\n", encoding="utf-8")
    monkeypatch.setenv("HISX_MAPS_DIR", str(maps))
    st = quarantine.replay(wh, "outpatient_visit", tenant, now=datetime(2027, 1, 1))
    assert st.conserved
    assert st.moved + st.deduplicated == len(only)
    moved = set(wh.query_df(
        "SELECT source_key FROM std_outpatient_visit WHERE tenant = :t AND load_id LIKE "
        "'replay-%'", {"t": tenant_code})["source_key"].astype(int))
    assert moved <= only and len(moved) == st.moved
    left = set(wh.query_df("SELECT source_key FROM quarantine WHERE dataset = "
                           "'outpatient_visit' AND tenant = :t", {"t": tenant_code})
               ["source_key"].astype(int))
    assert not (left & only) and more <= left
    assert wh.scalar("SELECT count(*) FROM std_outpatient_visit WHERE tenant = :t",
                     {"t": tenant_code}) == std_before + st.moved
    assert len(left) == q_before - len(only)
    # the rows that still fail keep their other reasons, without the fixed one
    still = wh.query_df("SELECT reasons FROM quarantine WHERE dataset = 'outpatient_visit' "
                        "AND tenant = :t", {"t": tenant_code})["reasons"]
    assert all(f"unmapped:dept_code:{code}" not in json.loads(r) for r in still)
    # replay twice changes nothing
    snap = wh.query_df("SELECT * FROM quarantine ORDER BY dataset, tenant, source_key")
    st2 = quarantine.replay(wh, "outpatient_visit", tenant, now=datetime(2027, 1, 1))
    assert st2.moved == 0 and st2.conserved
    assert wh.query_df("SELECT * FROM quarantine ORDER BY dataset, tenant, source_key").equals(snap)
