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
    print(f"\nWarehouse: {s.warehouse_url}")
    if s.warehouse_url.startswith("duckdb:///"):
        path = s.warehouse_url[len("duckdb:///"):]
        print(f"  query it: duckdb -readonly {path} \"SELECT * FROM mart_visits_monthly\"")
        print("  or: .venv/bin/python -c \"import duckdb; print(duckdb.connect("
              f"'{path}', read_only=True).sql('FROM mart_visits_monthly'))\"")
    print("Dagster UI: make ui  (then open http://127.0.0.1:3000)")
