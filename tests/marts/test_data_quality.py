"""mart_data_quality: Kahn categories per center and day, equal to an independent pandas
computation over mart_dq_daily and the standardized tables."""

from __future__ import annotations

import pandas as pd
import pytest

BACKENDS = ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def wh(request):
    return request.getfixturevalue("duck_world" if request.param == "duckdb" else "pg_world")


def _df(wh, sql: str) -> pd.DataFrame:
    df = wh.query_df(sql)
    for c in ("period_start", "business_date"):
        if c in df:
            df[c] = pd.to_datetime(df[c]).dt.date
    return df


def test_kahn_rates_match_pandas(wh) -> None:
    got = _df(wh, "SELECT * FROM mart_data_quality").set_index(["tenant", "period_start"])
    dq = _df(wh, "SELECT * FROM mart_dq_daily")
    assert len(got) > 0 and got["rows_in"].sum() == dq["rows_in"].sum()
    g = dq.groupby(["tenant", "period_start"])
    exp = pd.DataFrame({
        "rows_in": g["rows_in"].sum(),
        "conformance": 1 - (g["q_unmapped"].sum() + g["q_invalid"].sum()) / g["rows_in"].sum(),
        "completeness": 1 - g["q_missing"].sum() / g["rows_in"].sum(),
        "plausibility": 1 - (g["q_implausible"].sum() + g["q_inconsistent"].sum()
                             + g["q_future"].sum()) / g["rows_in"].sum(),
        "timeliness": 1 - g["late_rows"].sum() / g["standardized"].sum(),
    })
    both = got.join(exp.add_suffix("_exp"), how="inner")
    assert len(both) == len(exp)
    for c in ("conformance", "completeness", "plausibility", "timeliness"):
        pd.testing.assert_series_equal(both[c].astype(float), both[f"{c}_exp"].astype(float),
                                       check_names=False, atol=1e-9)
    # the simulator's defects must show up: some day is not perfectly conformant/plausible
    assert (got["conformance"] < 1).any() and (got["plausibility"] < 1).any()


def test_consistency_counts_match_pandas(wh) -> None:
    rx = _df(wh, "SELECT tenant, source_key, visit_source_key, business_date FROM "
                 "std_prescription")
    visits = _df(wh, "SELECT tenant, source_key FROM std_outpatient_visit")
    charges = _df(wh, "SELECT tenant, rx_source_key FROM std_charge")
    rx["no_visit"] = ~rx.set_index(["tenant", "visit_source_key"]).index.isin(
        visits.set_index(["tenant", "source_key"]).index)
    rx["no_charge"] = ~rx.set_index(["tenant", "source_key"]).index.isin(
        charges.dropna().astype({"rx_source_key": "int64"})
        .set_index(["tenant", "rx_source_key"]).index)
    exp = rx.groupby(["tenant", "business_date"])[["no_visit", "no_charge"]].sum()
    got = _df(wh, "SELECT tenant, period_start, rx_without_visit, rx_without_charge FROM "
                  "mart_data_quality").set_index(["tenant", "period_start"])
    both = got.join(exp.rename_axis(["tenant", "period_start"]), how="inner")
    assert len(both) == len(exp)
    assert (both["rx_without_visit"] == both["no_visit"]).all()
    assert (both["rx_without_charge"] == both["no_charge"]).all()
    # visits quarantined for an unmapped department leave their prescriptions orphaned
    assert both["rx_without_visit"].sum() > 0
