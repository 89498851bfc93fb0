"""Keyed fact loads: an incremental build re-loads only the keys changed since the oldest dirty
load, and ends equal to a rebuild from scratch: a week-old soft delete, a visit moved to
another patient (its diagnoses' person key), a visit and a diagnosis that became quarantined,
an original charge moved to another day (its refund's refund_of_date), and a hard delete
(which loads the whole range)."""

from __future__ import annotations

import hashlib
from datetime import date, datetime

import pytest
import sqlalchemy as sa

from hisx.connectors.warehouse import Warehouse
from hisx.marts import runner
from hisx.pipelines import deletes, flow
from hisx.simulator import simulate
from hisx.standards.datasets import DATASETS

NOW = datetime(2027, 1, 1)
FACTS = ("fact_visit", "fact_diagnosis", "fact_prescription_item", "fact_charge",
         "fact_dispense", "fact_chronic_followup", "fact_family_contract")
WIDE = (date(1900, 1, 1), date(2100, 1, 1))


def _digests(wh: Warehouse) -> dict[str, str]:
    out = {}
    for m in FACTS:
        df = wh.query_df(f"SELECT * FROM {m} ORDER BY tenant, source_key")
        out[m] = hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()
    return out


def _rebuilt(wh: Warehouse, tenants: list[str]) -> dict[str, str]:
    """Every fact from nothing, over a range holding every row (no keys)."""
    for m in FACTS:
        wh.execute(f"DELETE FROM {m}")
        runner.load_mart_many(wh, m, tenants, *WIDE)
    return _digests(wh)


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A simulated source (one month, two centers) standardized into DuckDB, marts built."""
    monkeypatch.setenv("HISX_PSEUDO_KEY", "test-key-aaaaaaaaaaaaaaaaaaaaaaaa")
    url = f"sqlite:///{tmp_path / 'his.sqlite'}"
    simulate(url, centers=2, months=1, visits_per_month=300, seed=5, start=date(2026, 8, 1),
             progress=False)
    engine = sa.create_engine(url)
    wh = Warehouse.from_url(f"duckdb:///{tmp_path / 'wh.duckdb'}")
    flow.ensure_warehouse(wh)
    tenants = flow.discover_tenants(engine)
    flow.extract(engine, wh, source="his", tenants=tenants)
    for ds in DATASETS:
        flow.standardize_tenants(wh, ds, tenants, now=NOW)
    flow.build_marts(wh)
    yield engine, wh, tenants
    wh.close()
    engine.dispose()


def _next_rv(c) -> int:
    return max(c.execute(sa.text(f"SELECT max(row_version) FROM {t}")).scalar() or 0
               for t in ("registrations", "diagnoses", "charges", "patients")) + 1


def _incremental(engine, wh, tenants, monkeypatch) -> list[tuple[str, str | None]]:
    """Extract, standardize and build the marts; the (fact, since) of each keyed load."""
    seen: list[tuple[str, str | None]] = []
    real = runner._keyed

    def spy(wh_, table, stmts, keys):
        seen.append(table)
        return real(wh_, table, stmts, keys)

    monkeypatch.setattr(runner, "_keyed", spy)
    flow.extract(engine, wh, source="his", tenants=tenants)
    for ds in DATASETS:
        flow.standardize_tenants(wh, ds, tenants, now=NOW)
    flow.build_marts(wh)
    return seen


def test_changed_keys_only_and_equal_to_rebuild(world, monkeypatch) -> None:
    engine, wh, tenants = world
    t = tenants[0].org_code
    visits = wh.query_df(
        "SELECT v.source_key, count(d.source_key) AS n FROM std_outpatient_visit v "
        "JOIN std_diagnosis d ON d.tenant = v.tenant AND d.visit_source_key = v.source_key "
        "WHERE v.tenant = :t GROUP BY v.source_key, v.business_date "
        "ORDER BY v.business_date, v.source_key", {"t": t})
    old, moved, bad = (int(k) for k in visits["source_key"].iloc[[0, 1, 2]])
    other = int(wh.scalar("SELECT max(source_key) FROM std_person WHERE tenant = :t", {"t": t}))
    diag = int(wh.scalar("SELECT min(source_key) FROM std_diagnosis WHERE tenant = :t AND "
                         "visit_source_key NOT IN (:a, :b, :c)", {"t": t, "a": old, "b": moved,
                                                                  "c": bad}))
    orig = int(wh.scalar("SELECT min(refund_of_source_key) FROM std_charge WHERE tenant = :t "
                         "AND refund_of_source_key IS NOT NULL", {"t": t}))
    with engine.begin() as c:  # new row versions above every row of the source
        rv = _next_rv(c)
        c.execute(sa.text("UPDATE registrations SET is_deleted = 1, row_version = :rv "
                          "WHERE reg_id = :k"), {"rv": rv, "k": old})
        c.execute(sa.text("UPDATE registrations SET patient_id = :p, row_version = :rv "
                          "WHERE reg_id = :k"), {"p": other, "rv": rv + 1, "k": moved})
        c.execute(sa.text("UPDATE registrations SET dept_code = 'NO-SUCH-DEPT', row_version = :rv "
                          "WHERE reg_id = :k"), {"rv": rv + 2, "k": bad})
        c.execute(sa.text("UPDATE diagnoses SET icd_code = 'NOT-AN-ICD', row_version = :rv "
                          "WHERE diag_id = :k"), {"rv": rv + 3, "k": diag})
        c.execute(sa.text("UPDATE charges SET charge_time = '2026-08-01 08:00:00.000000', "
                          "row_version = :rv WHERE charge_id = :k"), {"rv": rv + 4, "k": orig})
    before = _digests(wh)
    keyed = _incremental(engine, wh, tenants, monkeypatch)
    assert {"fact_visit", "fact_diagnosis", "fact_charge"} <= set(keyed)
    q = wh.query_df("SELECT dataset, source_key FROM quarantine WHERE tenant = :t", {"t": t})
    pairs = set(zip(q["dataset"], q["source_key"], strict=True))
    assert {("outpatient_visit", bad), ("diagnosis", diag)} <= pairs
    assert not wh.scalar("SELECT count(*) FROM fact_visit WHERE source_key = :k", {"k": bad})
    assert wh.scalar("SELECT bool_and(person_key IS NULL) FROM fact_diagnosis "
                     "WHERE visit_source_key = :k", {"k": bad})
    assert wh.scalar("SELECT refund_of_date FROM fact_charge WHERE refund_of_source_key = :k "
                     "LIMIT 1", {"k": orig}) == date(2026, 8, 1)
    incremental = _digests(wh)
    assert incremental != before
    assert _rebuilt(wh, [x.org_code for x in tenants]) == incremental


def test_unchanged_rows_keep_their_place(world, monkeypatch) -> None:
    """A keyed load leaves every row of an unchanged key where it is (not re-written)."""
    engine, wh, tenants = world
    t = tenants[0].org_code
    key = int(wh.scalar("SELECT min(source_key) FROM std_outpatient_visit WHERE tenant = :t",
                        {"t": t}))
    with engine.begin() as c:
        c.execute(sa.text("UPDATE registrations SET is_deleted = 1, row_version = :rv "
                          "WHERE reg_id = :k"), {"rv": _next_rv(c), "k": key})
    rows = "SELECT rowid AS r, source_key FROM fact_visit WHERE tenant = :t ORDER BY source_key"
    before = wh.query_df(rows, {"t": t})
    assert "fact_visit" in _incremental(engine, wh, tenants, monkeypatch)
    after = wh.query_df(rows, {"t": t})
    moved = set(before.merge(after, on="source_key").query("r_x != r_y")["source_key"])
    assert moved == {key}


def test_a_hard_delete_loads_the_whole_range(world, monkeypatch) -> None:
    engine, wh, tenants = world
    t = tenants[1].org_code
    gone, changed = (int(k) for k in wh.query_df(
        "SELECT source_key FROM std_outpatient_visit WHERE tenant = :t ORDER BY source_key "
        "LIMIT 2", {"t": t})["source_key"])
    with engine.begin() as c:
        c.execute(sa.text("UPDATE registrations SET is_deleted = 1, row_version = :rv "
                          "WHERE reg_id = :k"), {"rv": _next_rv(c), "k": changed})
    deletes.remove(wh, "his", t, "registrations", [gone])
    assert wh.scalar("SELECT count(*) FROM mart_dirty WHERE load_id IS NULL")
    keyed = _incremental(engine, wh, tenants, monkeypatch)
    assert "fact_visit" not in keyed  # a removal leaves no key in std: the range is loaded
    assert not wh.scalar("SELECT count(*) FROM fact_visit WHERE source_key = :k", {"k": gone})
    incremental = _digests(wh)
    assert _rebuilt(wh, [x.org_code for x in tenants]) == incremental
