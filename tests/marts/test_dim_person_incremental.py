"""dim_person re-loads only the persons a load touched, and ends equal to a rebuild from
scratch: a record moved to another person (corrected ID number), a soft-deleted record, a
hard-deleted one and a new registration of a known person."""

from __future__ import annotations

import hashlib
from datetime import date, datetime

import sqlalchemy as sa

from hisx.connectors.warehouse import Warehouse
from hisx.marts import runner
from hisx.pipelines import deletes, flow
from hisx.simulator import simulate
from hisx.standards.datasets import DATASETS

NOW = datetime(2027, 1, 1)


def _dim(wh: Warehouse) -> str:
    df = wh.query_df("SELECT * FROM dim_person ORDER BY tenant, person_key")
    return hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()


def _rebuilt(wh: Warehouse, tenants: list[str]) -> str:
    """dim_person from nothing: every tenant over a range holding every record."""
    wh.execute("DELETE FROM dim_person")
    for t in tenants:
        runner.load_mart(wh, "dim_person", t, date(1900, 1, 1), date(2100, 1, 1))
    return _dim(wh)


def _world(tmp_path, monkeypatch, centers: int, seed: int) -> tuple[sa.Engine, Warehouse, list]:
    """A simulated source (one month) extracted into a fresh DuckDB warehouse."""
    monkeypatch.setenv("HISX_PSEUDO_KEY", "test-key-aaaaaaaaaaaaaaaaaaaaaaaa")
    url = f"sqlite:///{tmp_path / 'his.sqlite'}"
    simulate(url, centers=centers, months=1, visits_per_month=300, seed=seed,
             start=date(2026, 8, 1), progress=False)
    engine = sa.create_engine(url)
    wh = Warehouse.from_url(f"duckdb:///{tmp_path / 'wh.duckdb'}")
    flow.ensure_warehouse(wh)
    tenants = flow.discover_tenants(engine)
    flow.extract(engine, wh, source="his", tenants=tenants)
    return engine, wh, tenants


def test_changed_persons_only_and_equal_to_rebuild(tmp_path, monkeypatch) -> None:
    engine, wh, tenants = _world(tmp_path, monkeypatch, centers=2, seed=11)
    codes = [t.org_code for t in tenants]
    with wh:
        for ds in DATASETS:
            flow.standardize_tenants(wh, ds, tenants, now=NOW)
        flow.build_marts(wh)
        t = codes[0]
        people = wh.query_df(
            "SELECT s.source_key, s.person_key, s.business_date FROM std_person s "
            "JOIN dim_person d ON d.tenant = s.tenant AND d.person_key = s.person_key "
            "WHERE s.tenant = :t AND d.records = 1 AND s.person_key_strength = 'strong' "
            "ORDER BY s.business_date, s.source_key", {"t": t})
        mover, target, soft, hard = (int(k) for k in people["source_key"].iloc[[0, -1, 1, 2]])
        moved_key = people["person_key"].iloc[0]
        assert people["business_date"].iloc[0] != people["business_date"].iloc[-1]
        with engine.begin() as c:  # new row versions above every row of the source
            top = max(c.execute(sa.text(f"SELECT max(row_version) FROM {n}")).scalar() or 0
                      for n in ("patients", "registrations", "organizations"))
            target_id = c.execute(sa.text("SELECT id_no, name, birth_date, gender FROM patients "
                                          "WHERE patient_id = :p"), {"p": target}).one()
            c.execute(sa.text("UPDATE patients SET id_no = :i, name = :n, birth_date = :b, "
                              "gender = :g, row_version = :rv WHERE patient_id = :p"),
                      {"i": target_id[0], "n": target_id[1], "b": target_id[2],
                       "g": target_id[3], "rv": top + 1, "p": mover})
            c.execute(sa.text("UPDATE patients SET is_deleted = 1, row_version = :rv "
                              "WHERE patient_id = :p"), {"rv": top + 2, "p": soft})
        flow.extract(engine, wh, source="his", tenants=tenants)
        flow.standardize_tenants(wh, "person", tenants, now=NOW)
        deletes.remove(wh, "his", t, "patients", [hard])
        assert wh.scalar("SELECT count(*) FROM mart_dirty_keys WHERE tenant = :t",
                         {"t": t}) >= 2  # the moved record's old key and the removed one's
        before = wh.query_df("SELECT tenant, person_key, records FROM dim_person")
        flow.build_marts(wh)
        assert not wh.scalar("SELECT count(*) FROM mart_dirty_keys")
        after = wh.query_df("SELECT tenant, person_key, records FROM dim_person")
        assert moved_key not in set(after["person_key"])  # its only record moved away
        assert len(after) == len(before) - 3  # moved, soft-deleted and removed persons
        incremental = _dim(wh)
        assert _rebuilt(wh, codes) == incremental
    engine.dispose()


def test_range_reload_touches_only_persons_of_the_range(tmp_path, monkeypatch) -> None:
    """A one-day load rewrites that day's persons and leaves the others' rows as they are."""
    engine, wh, tenants = _world(tmp_path, monkeypatch, centers=1, seed=3)
    with wh:
        flow.standardize_tenants(wh, "person", tenants, now=NOW)
        flow.build_marts(wh, ("dim_person",))
        t = tenants[0].org_code
        day = wh.scalar("SELECT max(business_date) FROM std_person WHERE tenant = :t", {"t": t})
        wh.execute("UPDATE dim_person SET records = -1")  # marks rows the load did not rewrite
        runner.load_mart(wh, "dim_person", t, day, day)
        got = wh.query_df("SELECT person_key, records FROM dim_person")
        of_day = set(wh.query_df("SELECT person_key FROM std_person WHERE tenant = :t AND "
                                 "business_date = :d", {"t": t, "d": day})["person_key"])
        assert of_day and set(got.loc[got["records"] > 0, "person_key"]) == of_day
        assert (got["records"] == -1).sum() == len(got) - len(of_day)
    engine.dispose()
