"""Text summaries of the warehouse for the demo and the CLI."""

from __future__ import annotations

import json

import pandas as pd

from hisx.config import Settings
from hisx.connectors.warehouse import Warehouse


def monthly_visits(wh: Warehouse) -> pd.DataFrame:
    return wh.query_df(
        "SELECT tenant, period_start AS month, visits, first_visits, return_visits, "
        "outpatient, emergency, cancelled FROM mart_visits_monthly ORDER BY tenant, month"
    )


def quarantine_by_reason(wh: Warehouse) -> pd.DataFrame:
    q = wh.query_df("SELECT dataset, tenant, reasons FROM quarantine")
    if q.empty:
        return pd.DataFrame(columns=["dataset", "reason", "rows"])
    q["reason"] = q["reasons"].map(lambda s: [":".join(r.split(":")[:2]) for r in json.loads(s)])
    q = q.explode("reason")
    return (q.groupby(["dataset", "reason"]).size().rename("rows").reset_index()
            .sort_values(["dataset", "rows"], ascending=[True, False]))


def conservation(wh: Warehouse) -> pd.DataFrame:
    return wh.query_df(
        "SELECT dataset, tenant, sum(rows_in) AS rows_in, sum(standardized) AS standardized, "
        "sum(quarantined) AS quarantined, sum(deduplicated) AS deduplicated "
        "FROM std_log GROUP BY dataset, tenant ORDER BY dataset, tenant"
    )


def print_demo_summary(s: Settings) -> None:
    with Warehouse.from_url(s.warehouse_url) as wh:
        names = dict(wh.query_df("SELECT DISTINCT org_code, org_name FROM ods_organizations")
                     .itertuples(index=False, name=None))
        mv = monthly_visits(wh)
        mv.insert(1, "center", mv["tenant"].map(names))
        with pd.option_context("display.width", 160, "display.max_columns", 20,
                               "display.max_rows", 200):
            print("\n== Outpatient visits per center and month (mart_visits_monthly) ==")
            print(mv.drop(columns=["tenant"]).to_string(index=False))
            cons = conservation(wh)
            cons["conserved"] = cons["rows_in"] == (cons["standardized"] + cons["quarantined"]
                                                     + cons["deduplicated"])
            print("\n== Conservation: rows in = standardized + quarantined + deduplicated ==")
            print(cons.to_string(index=False))
            print("\n== Quarantine by reason ==")
            print(quarantine_by_reason(wh).to_string(index=False))
        from hisx.marts.report_html import write_report
        from hisx.pipelines import feeds

        print("\n== Push feed (ledger) ==")
        st = feeds.status(wh)
        if len(st):
            print(st.pivot_table(index="dataset", columns="state", values="messages",
                                 aggfunc="sum", fill_value=0).to_string())
        report = write_report(wh, s.home / "report.html")
    print(f"\nHTML report (visit trend, revenue mix, chronic control, DQ): {report}")
    if not s.feed_bootstrap:
        print(f"Feed envelopes (local outbox, one JSON-lines file per topic): {s.outbox_dir}")
    print(f"\nWarehouse: {s.warehouse_url}")
    if s.warehouse_url.startswith("duckdb:///"):
        path = s.warehouse_url[len("duckdb:///"):]
        print("  query it: .venv/bin/python -c \"import duckdb; print(duckdb.connect("
              f"'{path}', read_only=True).sql('FROM mart_visits_monthly'))\"")
    print("  marts: mart_visits_daily/monthly, mart_revenue_*, mart_drug_monthly, "
          "mart_diagnosis_monthly, mart_chronic_monthly, mart_family_doctor_monthly, "
          "mart_dq_daily; views in schema `share`")
    print("Dagster UI: make ui  (then open http://127.0.0.1:3000)")
    print("Share API: .venv/bin/hisx keys create --tenant region --scopes region:read; "
          ".venv/bin/hisx serve")
