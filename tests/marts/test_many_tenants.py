"""Loading a mart for many tenants at once gives exactly the rows of one load per tenant, on
both warehouses, for every mart (the separable ones in one statement, the others by loop)."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from datetime import date, datetime

import pytest
import sqlalchemy as sa

from hisx.connectors.warehouse import Warehouse
from hisx.marts import runner

BACKENDS = ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]

WIDE = (date(2000, 1, 1), date(2030, 12, 31))

#: The marts that ``SELECT :tenant``-ed or mixed tenants before they were made separable.
REWRITTEN = ("dim_center", "dim_date", "mart_dq_daily", "mart_chronic_monthly",
             "mart_family_doctor_monthly")


@pytest.fixture(params=BACKENDS)
def wh(request):
    return request.getfixturevalue("duck_world" if request.param == "duckdb" else "pg_world")


def digest(wh, table: str) -> str:
    df = wh.query_df(f"SELECT * FROM {table}")
    df = df.sort_values(list(df.columns), kind="mergesort").reset_index(drop=True)
    return hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()


def tenants(wh) -> list[str]:
    return sorted(wh.query_df("SELECT DISTINCT tenant FROM std_outpatient_visit")["tenant"])


def snapshot(wh) -> dict[str, str]:
    return {m: digest(wh, m) for m in runner.MARTS}


def test_many_tenant_loads_equal_per_tenant_loads(wh) -> None:
    ts = tenants(wh)
    assert len(ts) == 3
    for name in runner.MARTS:  # one tenant at a time, in load order
        for t in ts:
            runner.load_mart(wh, name, t, *WIDE)
    one_by_one = snapshot(wh)
    for name in runner.MARTS:
        wh.execute(f"DELETE FROM {name}")
    for name in runner.MARTS:  # all tenants together
        runner.load_mart_many(wh, name, ts, *WIDE)
    together = snapshot(wh)
    assert together == one_by_one
    # and the marts are not empty: the comparison compared something
    for name in ("fact_visit", "mart_visits_daily", "mart_drug_monthly", "dim_staff"):
        assert wh.scalar(f"SELECT count(DISTINCT tenant) FROM {name}") == 3, name


def test_tenant_batches_equal_one_statement(wh, monkeypatch) -> None:
    """Over ``HISX_MART_BATCH_TENANTS`` centers, the load runs batch by batch (bounded work
    per statement at city scale) with the same rows as one statement over all."""
    ts = tenants(wh)
    for name in runner.MARTS:
        runner.load_mart_many(wh, name, ts, *WIDE)
    together = snapshot(wh)
    calls: list[int] = []
    real = runner.load_mart_many

    def spy(wh_, name, tenants_, a, b, since=None):
        calls.append(len(tenants_))
        return real(wh_, name, tenants_, a, b, since)

    monkeypatch.setattr(runner, "load_mart_many", spy)
    monkeypatch.setenv("HISX_MART_BATCH_TENANTS", "2")
    for name in runner.MARTS:
        wh.execute(f"DELETE FROM {name}")
        runner.load_mart_many(wh, name, ts, *WIDE)
    assert snapshot(wh) == together
    assert calls[:3] == [3, 2, 1]  # the call over 3 centers became batches of 2 and 1
    monkeypatch.setenv("HISX_MART_BATCH_TENANTS", "0")
    with pytest.raises(ValueError, match="HISX_MART_BATCH_TENANTS"):
        runner.mart_batch_tenants()


def test_short_ranges_take_more_centers_per_statement(monkeypatch) -> None:
    """A day or a week of a city loads in few statements when the mart reads only the
    range's rows; a month or more, and the marts that read more, keep
    ``HISX_MART_BATCH_TENANTS`` centers."""
    monkeypatch.setenv("HISX_MART_BATCH_TENANTS", "32")
    day, week, month = date(2026, 8, 1), date(2026, 8, 7), date(2026, 8, 31)
    assert runner.batch_tenants("fact_visit", day, day) == 32 * 31
    assert runner.batch_tenants("mart_visits_daily", day, week) == 32 * 31 // 7
    assert runner.batch_tenants("mart_visits_daily", day, month) == 32
    assert runner.batch_tenants("fact_visit", *WIDE) == 32
    others = set(runner.MARTS) - runner.RANGE_BOUND
    assert {m for m in runner.MARTS if m.endswith("_monthly")} | set(runner.FULL_REFRESH) == (
        others)
    for name in others:
        assert runner.batch_tenants(name, day, day) == 32, name
    assert set(runner.MARTS) >= runner.RANGE_BOUND


def test_a_short_range_batches_by_center_days_with_the_same_rows(wh, monkeypatch) -> None:
    """Three centers, one statement of 2 centers per month: a 15-day range goes in one
    statement, a whole-month mart still in batches of 2; the rows equal one-by-one loads."""
    ts = tenants(wh)
    days = wh.query_df("SELECT business_date FROM std_outpatient_visit ORDER BY 1")
    lo = days["business_date"].iloc[len(days) // 2]
    lo = lo.date() if hasattr(lo, "date") else lo
    rng = (lo, date.fromordinal(lo.toordinal() + 14))
    for name in runner.MARTS:
        wh.execute(f"DELETE FROM {name}")
        for t in ts:
            runner.load_mart(wh, name, t, *rng)
    one_by_one = snapshot(wh)
    calls: list[tuple[str, int]] = []
    real = runner.load_mart_many

    def spy(wh_, name, tenants_, a, b, since=None):
        calls.append((name, len(tenants_)))
        return real(wh_, name, tenants_, a, b, since)

    monkeypatch.setattr(runner, "load_mart_many", spy)
    monkeypatch.setenv("HISX_MART_BATCH_TENANTS", "2")
    try:
        for name in runner.MARTS:
            wh.execute(f"DELETE FROM {name}")
            runner.load_mart_many(wh, name, ts, *rng)
        assert snapshot(wh) == one_by_one
        assert [n for name, n in calls if name == "fact_visit"] == [3]  # 2 x 31 // 15 = 4
        assert [n for name, n in calls if name == "mart_visits_monthly"] == [3, 2, 1]
    finally:  # the world is shared by the other mart tests: every mart whole again
        for name in runner.MARTS:
            wh.execute(f"DELETE FROM {name}")
            real(wh, name, ts, *WIDE)


def test_separable_marts_are_the_reviewed_ones() -> None:
    separable = {m for m in runner.MARTS if runner.tenant_separable(m)}
    assert separable == set(runner.TENANT_SEPARABLE)
    assert separable >= set(REWRITTEN)


@pytest.mark.parametrize("extra", [
    # the output tenant from the parameter: every tenant would get the first one's name
    "INSERT INTO dim_center SELECT :tenant, NULL, NULL, NULL, NULL",
    # a window over all tenants of the scope
    "INSERT INTO dim_center SELECT tenant, MIN(business_date) OVER (ORDER BY business_date), "
    "NULL, NULL, NULL FROM std_outpatient_visit WHERE tenant = :tenant",
])
def test_a_non_separable_statement_is_refused(monkeypatch, extra: str) -> None:
    sql = runner.mart_sql("dim_center") + "\n" + extra + ";\n"
    monkeypatch.setattr(runner, "mart_sql", lambda name: sql)
    runner.tenant_separable.cache_clear()
    try:
        assert not runner.tenant_separable("dim_center")
    finally:
        runner.tenant_separable.cache_clear()


def test_an_unreviewed_mart_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(runner, "TENANT_SEPARABLE", runner.TENANT_SEPARABLE - {"dim_date"})
    runner.tenant_separable.cache_clear()
    try:
        assert not runner.tenant_separable("dim_date")
    finally:
        runner.tenant_separable.cache_clear()


# -- a richer world for the rewritten marts: 3 months, sub-ranges, and edge cases -------------

SUB_RANGES = [
    (date(2026, 8, 10), date(2026, 8, 20)),   # mid-month: a cumulative monthly reloads from Aug
    (date(2026, 8, 15), date(2026, 9, 14)),   # across a month boundary
    (date(2026, 9, 1), date(2026, 12, 31)),   # the last month and months without any rows
    (date(2026, 7, 31), date(2026, 7, 31)),   # one day
]
LOCAL_PG = os.environ.get("HISX_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
NO_DATA = "ZZ00000000000000NODATA"  # a center in ods_organizations with no std rows


@pytest.fixture(scope="module")
def multi_source(tmp_path_factory) -> str:
    from hisx.simulator import simulate

    url = f"sqlite:///{tmp_path_factory.mktemp('many_src') / 'his.sqlite'}"
    simulate(url, centers=3, months=3, visits_per_month=300, seed=5, start=date(2026, 7, 1),
             progress=False)
    return url


def _edge_cases(wh: Warehouse) -> None:
    """Shape the standardized world so the edge cases occur: a center with a month of
    follow-ups, diagnoses and quarantined visits but no standardized visit (chronic month
    without visits; quarantine-only day × dataset combos), another whose last month has no
    visit, and a center with no std rows at all (NULL period_start in dim_center; a quarantined
    row on a day no dataset has)."""
    ts = sorted(wh.query_df("SELECT DISTINCT tenant FROM std_outpatient_visit")["tenant"])
    with wh.transaction():
        wh.execute("DELETE FROM std_outpatient_visit WHERE tenant = :t AND business_date "
                   "BETWEEN :a AND :b", {"t": ts[1], "a": date(2026, 8, 1), "b": date(2026, 8, 31)})
        wh.execute("DELETE FROM std_outpatient_visit WHERE tenant = :t AND business_date "
                   ">= :a", {"t": ts[2], "a": date(2026, 9, 1)})
        cols = ("org_id, org_code, org_name, uscc, division_code, his_vendor, updated_at, "
                "row_version, _load_id, _loaded_at")
        wh.execute(f"INSERT INTO ods_organizations ({cols}) SELECT 999, :z, 'no data', uscc, "
                   "division_code, his_vendor, updated_at, row_version, _load_id, _loaded_at "
                   "FROM ods_organizations WHERE org_code = :t", {"z": NO_DATA, "t": ts[0]})
        wh.execute("INSERT INTO quarantine (dataset, tenant, source_table, source_key, "
                   "row_version, reasons, original, load_id, quarantined_at, business_date) "
                   "VALUES ('charge', :z, 'charges', 1, 1, '[\"invalid:amount\"]', "
                   "'{\"charge_time\": \"2026-08-05 10:00:00\"}', 'test', :at, :d)",
                   {"z": NO_DATA, "at": datetime(2026, 8, 6), "d": date(2026, 8, 5)})


@pytest.fixture(scope="module", params=BACKENDS)
def multi(request, multi_source, tmp_path_factory) -> Iterator[Warehouse]:
    from hisx.pipelines import flow

    admin, name = None, ""
    if request.param == "duckdb":
        url = f"duckdb:///{tmp_path_factory.mktemp('many_wh') / 'wh.duckdb'}"
    else:
        name = f"hisx_many_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(LOCAL_PG, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = LOCAL_PG.rsplit("/", 1)[0] + f"/{name}"
    wh = Warehouse.from_url(url)
    try:
        engine = sa.create_engine(multi_source)
        try:
            flow.run_all(engine, wh, now=datetime(2027, 1, 1))
        finally:
            engine.dispose()
        _edge_cases(wh)
        yield wh
    finally:
        wh.close()
        if admin is not None:
            with admin.connect() as c:
                c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


def test_many_tenant_loads_equal_per_tenant_loads_over_months_and_ranges(multi) -> None:
    wh = multi
    ts = sorted(wh.query_df("SELECT DISTINCT org_code FROM ods_organizations")["org_code"])
    assert len(ts) == 4 and NO_DATA in ts
    for name in runner.MARTS:
        for t in ts:
            runner.load_mart(wh, name, t, *WIDE)
    one_by_one = snapshot(wh)
    for name in runner.MARTS:
        wh.execute(f"DELETE FROM {name}")
    for name in runner.MARTS:
        runner.load_mart_many(wh, name, ts, *WIDE)
    assert snapshot(wh) == one_by_one
    # a re-load of a sub-range (delete then insert, whole months for the monthly marts, every
    # later month for the cumulative ones) over all tenants gives the same rows again
    for lo, hi in SUB_RANGES:
        for name in runner.MARTS:
            runner.load_mart_many(wh, name, ts, lo, hi)
        assert snapshot(wh) == one_by_one, (lo, hi)

    # the edge cases are there, so the comparison compared them
    def q(sql: str) -> int:
        return int(wh.scalar(sql) or 0)

    assert q("SELECT count(*) FROM dim_center") == 4
    assert q(f"SELECT count(*) FROM dim_center WHERE tenant = '{NO_DATA}' "
             "AND period_start IS NULL") == 1
    assert q("SELECT count(DISTINCT tenant) FROM dim_date") == 3
    assert q("SELECT count(DISTINCT tenant) FROM mart_dq_daily") == 4
    assert q("SELECT count(*) FROM mart_dq_daily WHERE standardized = 0 AND quarantined > 0") > 0
    assert q("SELECT count(*) FROM mart_dq_daily WHERE standardized > 0 AND quarantined > 0") > 0
    assert q("SELECT count(DISTINCT tenant) FROM mart_chronic_monthly "
             "WHERE managed_patients > 0 AND followups > 0") == 3
    assert q("SELECT count(DISTINCT period_start) FROM mart_chronic_monthly") == 3
    # the months with follow-ups but no visit (the second and third centers) are there
    assert q("SELECT count(*) FROM mart_chronic_monthly m WHERE NOT EXISTS (SELECT 1 FROM "
             "fact_visit v WHERE v.tenant = m.tenant AND v.period_start >= m.period_start "
             "AND v.period_start < m.period_start + INTERVAL '1 month')") == 4
    assert q("SELECT count(*) FROM mart_family_doctor_monthly") == 7
    assert q("SELECT count(DISTINCT tenant) FROM mart_family_doctor_monthly "
             "WHERE contracted_residents > 0 AND contracted_visits > 0 "
             "AND contracted_chronic_patients > 0 AND new_contracts > 0") == 3
