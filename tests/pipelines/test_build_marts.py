"""build_marts loads centers whose dirty days differ in a few set-based statements over the
union of their ranges; the marts equal a per-center reload of each center's whole history."""

from __future__ import annotations

import hashlib
import random
from datetime import date, datetime, timedelta

import pyarrow as pa
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


@pytest.fixture
def dirty_wh(any_warehouse) -> Warehouse:
    """A warehouse of each kind with the marts' tables (the runs query is plain SQL)."""
    flow.ensure_warehouse(any_warehouse)
    return any_warehouse


def _mark(wh: Warehouse, rows: list[tuple[str, str, date, str | None]]) -> None:
    ds, tn, day, lid = zip(*rows, strict=True)
    wh.load_arrow("mart_dirty", pa.table({
        "dataset": pa.array(ds, pa.string()), "tenant": pa.array(tn, pa.string()),
        "business_date": pa.array(day, pa.date32()), "load_id": pa.array(lid, pa.string())}))


def _islands(days: set[date]) -> list[tuple[date, date]]:
    out: list[tuple[date, date]] = []
    for d in sorted(days):
        if out and (d - out[-1][1]).days == 1:
            out[-1] = (out[-1][0], d)
        else:
            out.append((d, d))
    return out


def test_dirty_days_are_read_as_runs_of_consecutive_days(dirty_wh) -> None:
    """The warehouse returns one row per run of consecutive dirty days, not one per day (a
    city backfill marks ~1.4 M center-days, which as Python objects held ~500 MB through the
    marts); the ranges and load ids built from the runs are those of the days."""
    rng = random.Random(11)
    first = date(2012, 1, 1)
    days = {("person", "C1"): {first + timedelta(d) for d in range(2000)}
            | {date(2020, 1, 1) + timedelta(3 * k) for k in range(5)},
            ("outpatient_visit", "C1"): {date(2026, 8, 1) + timedelta(rng.randrange(31))
                                         for _ in range(20)},
            ("outpatient_visit", "C2"): {date(2026, 8, 1) + timedelta(rng.randrange(31))
                                         for _ in range(12)}}
    rows = [(ds, tn, d, f"2026{i:06d}-a") for (ds, tn), ds_days in days.items()
            for i, d in enumerate(sorted(ds_days))]
    some_visit_day = sorted(days[("outpatient_visit", "C1")])[3]
    rows += [("outpatient_visit", "C1", some_visit_day, None),  # a removal: load it whole
             ("person", "C1", first, "2025000000-z")]  # the same day again, an older load
    _mark(dirty_wh, rows)

    runs = flow._dirty_runs(dirty_wh, "", {})
    assert sorted((r.dataset, r.tenant, r.lo, r.hi) for r in runs) == sorted(
        (ds, tn, a, b) for (ds, tn), ds_days in days.items() for a, b in _islands(ds_days))
    assert sum(r.dataset == "person" for r in runs) == 6  # 2,005 days, 6 runs
    assert flow._since_of(runs) == {("C1", "person"): "2025000000-z",
                                    ("C1", "outpatient_visit"): None,
                                    ("C2", "outpatient_visit"): "2026000000-a"}
    for tn in ("C1", "C2"):  # a mart's ranges from the runs equal those from the days
        union = set().union(*(d for (_, t), d in days.items() if t == tn))
        got = flow._merge_ranges([(r.lo, r.hi) for r in runs if r.tenant == tn])
        assert got == flow._merge_ranges([(d, d) for d in union])


def test_build_marts_clears_only_the_dirty_days_it_read(dirty_wh, monkeypatch) -> None:
    """Days marked while the marts load stay dirty (the next build loads them), also a day
    next to a run that was read, and so do the centers outside the partition."""
    d = date
    _mark(dirty_wh, [("outpatient_visit", "C1", d(2026, 8, k), "l1") for k in (1, 2, 3, 10)]
          + [("outpatient_visit", "C2", d(2026, 8, 5), "l1")])
    calls: list[tuple[str, tuple[str, ...], date, date]] = []

    def fake_load(wh, name, tenants, lo, hi, since=None):
        if not calls:  # another process marks days meanwhile
            _mark(wh, [("outpatient_visit", "C1", d(2026, 8, 4), "l2"),
                       ("outpatient_visit", "C1", d(2026, 8, 6), "l2"),
                       ("outpatient_visit", "C3", d(2026, 8, 2), "l2")])
        calls.append((name, tuple(tenants), lo, hi))

    monkeypatch.setattr(runner, "load_mart_many", fake_load)
    done = flow.build_marts(dirty_wh, ("fact_visit",), tenants=["C1"])
    assert done == {"C1": [(d(2026, 8, 1), d(2026, 8, 3)), (d(2026, 8, 10), d(2026, 8, 10))]}
    assert calls == [("fact_visit", ("C1",), d(2026, 8, 1), d(2026, 8, 3)),
                     ("fact_visit", ("C1",), d(2026, 8, 10), d(2026, 8, 10))]
    left = dirty_wh.query_arrow("SELECT tenant, business_date FROM mart_dirty "
                                "ORDER BY tenant, business_date").to_pylist()
    assert [(r["tenant"], flow._day(r["business_date"])) for r in left] == [
        ("C1", d(2026, 8, 4)), ("C1", d(2026, 8, 6)), ("C2", d(2026, 8, 5)),
        ("C3", d(2026, 8, 2))]
