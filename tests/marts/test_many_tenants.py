"""Loading a mart for many tenants at once gives exactly the rows of one load per tenant, on
both warehouses, for every mart (the separable ones in one statement, the others by loop)."""

from __future__ import annotations

import hashlib
from datetime import date

import pytest

from hisx.marts import runner

BACKENDS = ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]

WIDE = (date(2000, 1, 1), date(2030, 12, 31))


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


def test_separable_marts_are_the_reviewed_ones() -> None:
    separable = {m for m in runner.MARTS if runner.tenant_separable(m)}
    assert separable == set(runner.TENANT_SEPARABLE)
    # the marts that mix tenants in one statement would be wrong: they stay per tenant
    assert not separable & {"dim_date", "mart_dq_daily", "dim_center"}
