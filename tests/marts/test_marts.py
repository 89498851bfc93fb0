"""Marts on DuckDB and PostgreSQL: contents equal independent pandas computations over the
standardized tables; re-loading a partition is byte-identical; late rows converge."""

from __future__ import annotations

import hashlib
import json
from datetime import date

import numpy as np
import pandas as pd
import pytest

from hisx.marts import runner
from hisx.standards.datasets import DATASETS

BACKENDS = ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def wh(request):
    return request.getfixturevalue("duck_world" if request.param == "duckdb" else "pg_world")


def digest(wh, table: str) -> str:
    """Checksum of a table's contents in a canonical order (every column)."""
    df = wh.query_df(f"SELECT * FROM {table}")
    df = df.sort_values(list(df.columns), kind="mergesort").reset_index(drop=True)
    return hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()


def std(wh, dataset: str) -> pd.DataFrame:
    df = wh.query_df(f"SELECT * FROM std_{dataset}")
    df["business_date"] = pd.to_datetime(df["business_date"]).dt.date
    return df


def mart(wh, name: str) -> pd.DataFrame:
    df = wh.query_df(f"SELECT * FROM {name}")
    df["period_start"] = pd.to_datetime(df["period_start"]).dt.date
    return df


def month(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s).dt.to_period("M").dt.start_time.dt.date


def as_float(s: pd.Series) -> pd.Series:
    return s.astype(float).round(2)


def test_every_mart_loaded_with_tenant_and_period(wh) -> None:
    tenants = set(wh.query_df("SELECT DISTINCT tenant FROM std_outpatient_visit")["tenant"])
    assert len(tenants) == 3
    for m in runner.MARTS:
        df = wh.query_df(f"SELECT tenant, period_start FROM {m}")
        assert {"tenant", "period_start"} <= set(df.columns)
        assert set(df["tenant"]) == tenants, m


def test_revenue_nets_refunds(wh) -> None:
    c = std(wh, "charge")
    assert c["is_refund"].astype(bool).any(), "the world must contain refunds"
    c["amount"] = c["amount"].astype(float)
    c["refund_amt"] = np.where(c["is_refund"].astype(bool), c["amount"], 0.0)
    keys = ["tenant", "business_date", "fee_category_code", "pay_method_code"]
    exp = c.groupby(keys).agg(net=("amount", "sum"), refunds=("refund_amt", "sum"),
                              n=("amount", "size")).round(2)
    got = mart(wh, "mart_revenue_daily").rename(columns={"period_start": "business_date"})
    got = got.set_index(keys)
    assert len(got) == len(exp)
    got = got.loc[exp.index]
    assert (as_float(got["net_amount"]) == exp["net"]).all()
    assert (as_float(got["refund_amount"]) == exp["refunds"]).all()
    assert ((got["charges"] + got["refunds"]) == exp["n"]).all()
    monthly = mart(wh, "mart_revenue_monthly").groupby("tenant")["net_amount"].sum()
    assert (as_float(monthly) == c.groupby("tenant")["amount"].sum().round(2)).all()
    # every refund row found its original by reference
    f = wh.query_df("SELECT refund_matched FROM fact_charge WHERE is_refund")
    assert f["refund_matched"].astype(bool).all()


def test_drug_top_n(wh) -> None:
    i = std(wh, "prescription_item")
    i["m"] = month(i["business_date"])
    i["amount"] = i["amount"].astype(float)
    exp = i.groupby(["tenant", "m", "drug_code"]).agg(
        amount=("amount", "sum"), quantity=("quantity", "sum"), rx=("rx_source_key", "nunique"))
    got = mart(wh, "mart_drug_monthly").set_index(["tenant", "period_start", "drug_code"])
    got = got.loc[exp.index]
    assert (as_float(got["amount"]) == exp["amount"].round(2)).all()
    assert np.allclose(got["quantity"].astype(float), exp["quantity"].astype(float))
    assert (got["prescriptions"] == exp["rx"]).all()
    for (tenant, m), grp in exp.reset_index().groupby(["tenant", "m"]):
        top = grp.sort_values(["amount", "drug_code"], ascending=[False, True])["drug_code"]
        mine = got.loc[(tenant, m)].sort_values("amount_rank").index
        assert list(mine[:10]) == list(top[:10])


def test_diagnosis_top_n(wh) -> None:
    d = std(wh, "diagnosis")
    d["m"] = month(d["business_date"])
    d["icd3"] = d["icd_code"].str[:3]
    exp = d.groupby(["tenant", "m", "icd3"]).agg(n=("icd3", "size"),
                                                 visits=("visit_source_key", "nunique"))
    got = mart(wh, "mart_diagnosis_monthly").set_index(["tenant", "period_start", "icd3"])
    assert len(got) == len(exp)
    got = got.loc[exp.index]
    assert (got["diagnoses"] == exp["n"]).all() and (got["visits"] == exp["visits"]).all()
    top1 = exp.reset_index().sort_values(["n", "icd3"], ascending=[False, True]) \
        .groupby(["tenant", "m"]).head(1).set_index(["tenant", "m"])["icd3"]
    first = got[got["diagnosis_rank"] == 1].reset_index().set_index(["tenant", "period_start"])
    assert first["icd3"].to_dict() == top1.to_dict()
    chapters = wh.query_df("SELECT icd3, icd_chapter FROM dim_diagnosis")
    assert chapters.loc[chapters["icd3"] == "I10", "icd_chapter"].eq("IX").all()
    assert chapters.loc[chapters["icd3"].str.startswith("E11"), "icd_chapter"].eq("IV").all()


def _registry(wh) -> pd.DataFrame:
    d = std(wh, "diagnosis")
    v = std(wh, "outpatient_visit")[["tenant", "source_key", "person_key"]]
    d = d[d["disease_group"].notna()].merge(
        v, left_on=["tenant", "visit_source_key"], right_on=["tenant", "source_key"])
    f = std(wh, "chronic_followup")
    reg = pd.concat([d[["tenant", "disease_group", "person_key", "business_date"]],
                     f[["tenant", "disease_group", "person_key", "business_date"]]])
    return reg.groupby(["tenant", "disease_group", "person_key"])["business_date"].min() \
        .rename("first_day").reset_index()


def test_chronic_control(wh) -> None:
    f = std(wh, "chronic_followup")
    f["m"] = month(f["business_date"])
    reg = _registry(wh)
    got = mart(wh, "mart_chronic_monthly").set_index(["tenant", "period_start", "disease_group"])
    assert len(got) > 0
    for (tenant, m, g), row in got.iterrows():
        end = (pd.Timestamp(m) + pd.offsets.MonthEnd(0)).date()
        r = reg[(reg.tenant == tenant) & (reg.disease_group == g) & (reg.first_day <= end)]
        assert row["managed_patients"] == len(r)
        fm = f[(f.tenant == tenant) & (f.disease_group == g) & (f.m == m)]
        last = fm.sort_values(["business_time", "source_key"]).groupby("person_key").tail(1)
        if g == "HTN":
            meas = last[last["sbp"].notna() & last["dbp"].notna()]
            ctrl = meas[(meas["sbp"] < 140) & (meas["dbp"] < 90)]
        else:
            meas = last[last["fasting_glucose"].notna()]
            ctrl = meas[meas["fasting_glucose"].astype(float) < 7.0]
        assert row["followed_up_patients"] == len(last)
        assert row["followups"] == len(fm)
        assert row["measured_patients"] == len(meas)
        assert row["controlled_patients"] == len(ctrl)
        assert row["control_rate"] == pytest.approx(len(ctrl) / len(meas))
        assert row["followup_rate"] == pytest.approx(len(last) / len(r))


def test_family_doctor(wh) -> None:
    c = std(wh, "family_contract")
    c = c[c["status_code"] != "3"]
    for col in ("start_date", "end_date"):
        c[col] = pd.to_datetime(c[col]).dt.date
    v = std(wh, "outpatient_visit")
    v = v[(v["status_code"] == "1") & ~v["is_deleted"].astype(bool)]
    reg = _registry(wh).groupby(["tenant", "person_key"])["first_day"].min().reset_index()
    got = mart(wh, "mart_family_doctor_monthly")
    assert len(got) == 3
    for row in got.itertuples():
        end = (pd.Timestamp(row.period_start) + pd.offsets.MonthEnd(0)).date()
        ct = c[c.tenant == row.tenant]
        in_force = set(ct[(ct.start_date <= end) & (ct.end_date >= end)]["person_key"])
        assert row.contracted_residents == len(in_force)
        chronic = set(reg[(reg.tenant == row.tenant) & (reg.first_day <= end)]["person_key"])
        assert row.chronic_patients == len(chronic)
        assert row.contracted_chronic_patients == len(chronic & in_force)
        vt = v[(v.tenant == row.tenant) & (month(v["business_date"]) == row.period_start)]
        m = vt.merge(ct[["person_key", "start_date", "end_date"]], on="person_key")
        m = m[(m.business_date >= m.start_date) & (m.business_date <= m.end_date)]
        assert row.visits == len(vt)
        assert row.contracted_visits == m["source_key"].nunique()


def test_dq_scorecard_counts(wh) -> None:
    got = mart(wh, "mart_dq_daily")
    for ds in ("outpatient_visit", "charge", "person"):
        s = std(wh, ds).groupby(["tenant", "business_date"]).size()
        g = got[got.dataset == ds].set_index(["tenant", "period_start"])["standardized"]
        g = g[g > 0]
        assert g.sort_index().to_dict() == s.sort_index().to_dict(), ds
    # quarantined rows count on their original business day: flow marks the business days
    # of every input row dirty, quarantined ones included, so all of them are loaded
    q = wh.query_df("SELECT dataset, tenant, original FROM quarantine")
    col = {d: s.business_time for d, s in DATASETS.items()}
    q["d"] = [pd.to_datetime(json.loads(o)[col[ds]], errors="coerce")
              for ds, o in zip(q["dataset"], q["original"], strict=True)]
    q = q[q["d"].notna()]
    assert len(q) > 0
    exp = q.groupby(["dataset", "tenant"]).size()
    tot = got.groupby(["dataset", "tenant"])["quarantined"].sum()
    assert tot[tot > 0].sort_index().to_dict() == exp.sort_index().to_dict()
    assert (got["rows_in"] == got["standardized"] + got["quarantined"]).all()
    assert got["q_unmapped"].sum() > 0
    load = mart(wh, "mart_dq_load_daily")
    assert load["conserved"].astype(bool).all()
    log = wh.query_df("SELECT sum(rows_in) AS n FROM std_log")["n"][0]
    assert load["rows_in"].sum() == log


def _ods_delays(wh, dataset: str) -> pd.DataFrame:
    """Per center and business day: rows whose ODS row arrived on a later day, and the mean
    and max delay in hours, from the ODS rows joined in pandas (not from the std column)."""
    spec = DATASETS[dataset]
    s = std(wh, dataset)[["tenant", "source_key", "business_date", "business_time"]]
    o = wh.query_df(f"SELECT org_code AS tenant, {spec.pk} AS source_key, updated_at "
                    f"FROM ods_{spec.source_table}")
    m = s.merge(o, on=["tenant", "source_key"], validate="one_to_one")
    h = (pd.to_datetime(m["updated_at"]) - pd.to_datetime(m["business_time"])
         ).dt.total_seconds() / 3600
    m = m.assign(h=h, late=pd.to_datetime(m["updated_at"]).dt.date > m["business_date"])
    return m.groupby(["tenant", "business_date"]).agg(
        late=("late", "sum"), avg=("h", "mean"), mx=("h", "max"))


def test_dq_timeliness_equals_the_ods_arrivals(wh) -> None:
    """The daily DQ mart reads each std row's stored arrival and each quarantined row's stored
    business day; they must give what the ODS rows and the original JSON give."""
    got = mart(wh, "mart_dq_daily")
    for ds in ("outpatient_visit", "charge", "person"):
        exp = _ods_delays(wh, ds)
        g = got[got.dataset == ds].set_index(["tenant", "period_start"])
        g = g[g["standardized"] > 0].sort_index()
        exp = exp.rename_axis(["tenant", "period_start"]).sort_index()
        assert list(g.index) == list(exp.index), ds
        assert g["late_rows"].astype(int).tolist() == exp["late"].astype(int).tolist(), ds
        np.testing.assert_allclose(g["avg_delay_hours"].astype(float), exp["avg"], atol=1e-6)
        np.testing.assert_allclose(g["max_delay_hours"].astype(float), exp["mx"], atol=1e-6)
        assert (exp["mx"] > 0).any(), ds  # real delays, so the comparison compares something
    q = wh.query_df("SELECT dataset, original, business_date FROM quarantine")
    assert len(q) > 0
    col = {d: s.business_time for d, s in DATASETS.items()}
    days = [str(json.loads(o).get(col[d]) or "")[:10] or None
            for d, o in zip(q["dataset"], q["original"], strict=True)]
    stored = [None if pd.isna(d) else str(pd.Timestamp(d).date()) for d in q["business_date"]]
    assert stored == days


def test_an_older_warehouse_gets_the_dq_columns_filled(wh) -> None:
    """A warehouse made before std rows kept their arrival and quarantine rows their business
    day: opening it adds both, filled from ODS and from the original JSON, and the DQ marts
    re-load to the same rows."""
    std_tables = [f"std_{d}" for d in DATASETS]
    cols = {t: wh.query_df(f"SELECT tenant, source_key, source_updated_at FROM {t}")
            for t in std_tables}
    qd = wh.query_df("SELECT dataset, tenant, source_key, business_date FROM quarantine")
    before = {m: digest(wh, m) for m in ("mart_dq_daily", "mart_data_quality")}
    with wh.transaction():
        wh.execute("ALTER TABLE quarantine DROP COLUMN business_date")
        for t in std_tables:
            wh.execute(f"ALTER TABLE {t} DROP COLUMN source_updated_at")
    runner.ensure_marts(wh)
    for t in std_tables:
        after = wh.query_df(f"SELECT tenant, source_key, source_updated_at FROM {t}")
        key = ["tenant", "source_key"]
        a, b = (x.sort_values(key).reset_index(drop=True) for x in (cols[t], after))
        assert len(a) > 0 and a["source_updated_at"].notna().all(), t
        pd.testing.assert_frame_equal(a, b, check_dtype=False)
    q2 = wh.query_df("SELECT dataset, tenant, source_key, business_date FROM quarantine")
    key = ["dataset", "tenant", "source_key"]
    pd.testing.assert_frame_equal(qd.sort_values(key).reset_index(drop=True),
                                  q2.sort_values(key).reset_index(drop=True), check_dtype=False)
    tenants = sorted(wh.query_df("SELECT DISTINCT tenant FROM fact_visit")["tenant"])
    for m in before:
        runner.load_mart_many(wh, m, tenants, date(2026, 8, 1), date(2026, 8, 31))
    assert {m: digest(wh, m) for m in before} == before


def test_rerun_partition_is_byte_identical(wh) -> None:
    tenant = str(wh.query_df("SELECT min(tenant) AS t FROM fact_visit")["t"][0])
    before = {m: digest(wh, m) for m in runner.MARTS}
    runner.load_tenant(wh, tenant, [date(2026, 8, 10)])
    runner.load_tenant(wh, tenant, [date(2026, 8, 1) + pd.Timedelta(days=i).to_pytimedelta()
                                    for i in range(31)])
    assert {m: digest(wh, m) for m in runner.MARTS} == before


def test_late_rows_converge(wh) -> None:
    """Rows of one day missing at first (center offline), then arriving late: only that day is
    re-loaded and every mart ends identical to the run that had them from the start."""
    tenant = str(wh.query_df("SELECT max(tenant) AS t FROM fact_visit")["t"][0])
    day = date(2026, 8, 12)
    before = {m: digest(wh, m) for m in runner.MARTS}
    tables = ["outpatient_visit", "charge", "prescription_item", "diagnosis"]
    saved = {t: wh.query_arrow(f"SELECT * FROM std_{t} WHERE tenant = :t AND "
                               "business_date = :d", {"t": tenant, "d": day}) for t in tables}
    assert all(a.num_rows > 0 for a in saved.values())
    with wh.transaction():
        for t in tables:
            wh.execute(f"DELETE FROM std_{t} WHERE tenant = :t AND business_date = :d",
                       {"t": tenant, "d": day})
    runner.load_tenant(wh, tenant, [day])
    assert digest(wh, "mart_visits_daily") != before["mart_visits_daily"]
    assert not wh.scalar("SELECT count(*) FROM fact_visit WHERE tenant = :t AND "
                         "period_start = :d", {"t": tenant, "d": day})
    with wh.transaction():
        for t, a in saved.items():
            wh.load_arrow(f"std_{t}", a)
    runner.load_tenant(wh, tenant, [day])
    assert {m: digest(wh, m) for m in runner.MARTS} == before
