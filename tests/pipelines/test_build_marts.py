"""build_marts loads centers whose dirty days differ in a few set-based statements over the
union of their ranges; the marts equal a per-center reload of each center's whole history."""

from __future__ import annotations

import hashlib
from datetime import date, datetime

import pytest
import sqlalchemy as sa

from hisx.connectors.warehouse import Warehouse
from hisx.marts import runner
from hisx.pipelines import flow
from hisx.standards.datasets import DATASETS


def _snapshot(wh: Warehouse) -> dict[str, str]:
    out = {}
    for t in runner.MARTS:
        df = wh.query_df(f"SELECT * FROM {t}")
        df = df[[c for c in df.columns if c not in ("batches",)]]
        df = df.sort_values(list(df.columns), kind="mergesort").reset_index(drop=True)
        out[t] = hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()
    return out


def test_merge_ranges() -> None:
    d = date
    rs = [(d(2026, 8, 3), d(2026, 8, 5)), (d(2026, 8, 1), d(2026, 8, 2)),
          (d(2020, 1, 1), d(2020, 1, 1)), (d(2026, 8, 4), d(2026, 8, 9))]
    assert flow._merge_ranges(rs) == [(d(2020, 1, 1), d(2020, 1, 1)),
                                      (d(2026, 8, 1), d(2026, 8, 9))]
    assert flow._merge_ranges(rs, full=True) == [(d(2020, 1, 1), d(2026, 8, 9))]
    many = [(d(2026, 1, 1 + 2 * i), d(2026, 1, 1 + 2 * i)) for i in range(12)]
    merged = flow._merge_ranges(many, max_ranges=3)
    assert len(merged) == 3 and merged[0][0] == d(2026, 1, 1) and merged[-1][1] == d(2026, 1, 23)
    assert all(any(a <= x <= b for a, b in merged) for x, _ in many)  # nothing left out


def test_union_ranges_equal_per_center_reload(tmp_path, monkeypatch) -> None:
    from hisx.simulator import simulate

    monkeypatch.setenv("HISX_PSEUDO_KEY", "test-key-aaaaaaaaaaaaaaaaaaaaaaaa")
    url = f"sqlite:///{tmp_path / 'his.sqlite'}"
    simulate(url, centers=3, months=2, visits_per_month=300, seed=5, start=date(2026, 7, 1),
             progress=False)
    engine = sa.create_engine(url)
    with Warehouse.from_url(f"duckdb:///{tmp_path / 'wh.duckdb'}") as wh:
        flow.ensure_warehouse(wh)
        tenants = flow.discover_tenants(engine)
        flow.extract(engine, wh, source="his", tenants=tenants)
        for ds in DATASETS:
            flow.standardize_tenants(wh, ds, tenants, now=datetime(2027, 1, 1))
        dirty = wh.query_df("SELECT tenant, min(business_date) AS a, max(business_date) AS b, "
                            "count(DISTINCT business_date) AS n FROM mart_dirty GROUP BY 1")
        assert len(dirty) == 3 and dirty["a"].nunique() > 1  # the centers' days differ
        done = flow.build_marts(wh)
        assert set(done) == {t.org_code for t in tenants}
        union = _snapshot(wh)
        lo = wh.scalar("SELECT min(business_date) FROM std_person")
        hi = wh.scalar("SELECT max(business_date) FROM std_outpatient_visit")
        for name in runner.MARTS:  # the reference: each center alone over its whole history
            for t in tenants:
                runner.load_mart(wh, name, t.org_code, lo, hi)
        assert _snapshot(wh) == union
    engine.dispose()


@pytest.mark.parametrize("n", [1, 2])
def test_single_center_takes_its_own_ranges(n) -> None:
    d = date
    assert flow._merge_ranges([(d(2026, 8, 1), d(2026, 8, 1))] * n) == [(d(2026, 8, 1),
                                                                        d(2026, 8, 1))]


def test_marts_load_with_their_own_duckdb_memory(monkeypatch) -> None:
    """Mart statements run under HISX_DUCKDB_MART_MEMORY; the pipeline's limit is back after,
    also when a load fails."""
    monkeypatch.setenv("HISX_DUCKDB_MEMORY", "200MB")
    monkeypatch.setenv("HISX_DUCKDB_MART_MEMORY", "600MB")
    seen: list[str] = []

    def limit(wh: Warehouse) -> str:
        return wh.scalar("SELECT current_setting('memory_limit')")

    def fake_load(wh, name, tenants, lo, hi, since=None):
        seen.append(limit(wh))
        if name == runner.MARTS[1]:
            raise RuntimeError("load failed")

    with Warehouse.from_url("duckdb://") as wh:
        flow.ensure_warehouse(wh)
        before = limit(wh)
        wh.execute("INSERT INTO mart_dirty (dataset, tenant, business_date) "
                   "VALUES ('outpatient_visit', 'C1', DATE '2026-08-01')")
        monkeypatch.setattr(runner, "load_mart_many", fake_load)
        with pytest.raises(RuntimeError, match="load failed"):
            flow.build_marts(wh)
        assert limit(wh) == before and before.startswith("190.7")  # 200 MB in MiB
        assert seen and all(s.startswith("572.2") for s in seen)  # 600 MB in MiB
    monkeypatch.setenv("HISX_DUCKDB_MART_MEMORY", "lots")
    with pytest.raises(ValueError, match="HISX_DUCKDB_MART_MEMORY must be a size"):
        flow.mart_memory()
