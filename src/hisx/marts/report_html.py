"""``hisx report``: a self-contained HTML report of the marts, charts as embedded PNG.

Visit trend per center (the article's chart), revenue mix, chronic-disease control and the
data-quality scorecard; matplotlib with the Agg backend, images inlined as base64.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime
from pathlib import Path

import pandas as pd

from hisx.connectors.warehouse import Warehouse


def _fig_png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["font.sans-serif"] = ["Noto Sans CJK SC", "WenQuanYi Zen Hei", "DejaVu Sans"]
    return plt


def _centers(wh: Warehouse) -> dict[str, str]:
    """Short ASCII chart labels C1, C2 … per tenant (the HTML lists the full names; chart
    fonts may lack CJK glyphs)."""
    df = wh.query_df("SELECT DISTINCT tenant FROM dim_center ORDER BY tenant")
    return {str(t): f"C{i + 1}" for i, t in enumerate(df["tenant"])}


def chart_visits(wh: Warehouse) -> bytes:
    plt = _plt()
    df = wh.query_df("SELECT tenant, period_start, visits FROM mart_visits_daily "
                     "ORDER BY period_start")
    names = _centers(wh)
    fig, ax = plt.subplots(figsize=(9, 4))
    for tenant, grp in df.groupby("tenant"):
        ax.plot(pd.to_datetime(grp["period_start"]), grp["visits"], marker="o", ms=3,
                label=names.get(str(tenant), str(tenant)))
    ax.set_title("Outpatient visits per center and day")
    ax.set_ylabel("visits")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    return _fig_png(fig)


def chart_revenue(wh: Warehouse) -> bytes:
    plt = _plt()
    df = wh.query_df(
        "SELECT r.tenant, COALESCE(v.meaning_en, r.fee_category_code) AS category, "
        "SUM(r.net_amount) AS net FROM mart_revenue_monthly r LEFT JOIN ref_value_set v ON "
        "v.value_set = 'fee_category' AND v.code = r.fee_category_code GROUP BY 1, 2")
    df["net"] = df["net"].astype(float)
    pivot = df.pivot_table(index="tenant", columns="category", values="net", fill_value=0)
    names = _centers(wh)
    pivot.index = [names.get(str(t), str(t)) for t in pivot.index]
    fig, ax = plt.subplots(figsize=(9, 4))
    pivot.plot(kind="barh", stacked=True, ax=ax, width=0.6)
    ax.set_title("Net revenue by fee category (refunds netted), CNY")
    ax.legend(fontsize=7, ncol=3, loc="lower right")
    return _fig_png(fig)


def chart_chronic(wh: Warehouse) -> bytes:
    plt = _plt()
    df = wh.query_df("SELECT tenant, disease_group, SUM(controlled_patients) AS c, "
                     "SUM(measured_patients) AS m, SUM(followed_up_patients) AS f, "
                     "SUM(managed_patients) AS n FROM mart_chronic_monthly GROUP BY 1, 2")
    names = _centers(wh)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
    for ax, (col_num, col_den, title) in zip(axes, [("c", "m", "Control rate"),
                                                     ("f", "n", "Follow-up rate")], strict=True):
        p = df.assign(rate=df[col_num].astype(float) / df[col_den].astype(float)
                      .where(df[col_den] > 0)).pivot_table(index="tenant",
                                                           columns="disease_group",
                                                           values="rate")
        p.index = [names.get(str(t), str(t)) for t in p.index]
        p.plot(kind="bar", ax=ax, rot=0)
        ax.set_title(title)
        ax.set_ylim(0, 1)
    return _fig_png(fig)


def chart_dq(wh: Warehouse) -> bytes:
    plt = _plt()
    df = wh.query_df("SELECT tenant, dataset, SUM(standardized) AS s, SUM(rows_in) AS n "
                     "FROM mart_dq_daily GROUP BY 1, 2")
    df["rate"] = df["s"].astype(float) / df["n"].astype(float)
    p = df.pivot_table(index="dataset", columns="tenant", values="rate")
    names = _centers(wh)
    fig, ax = plt.subplots(figsize=(9, 4))
    im = ax.imshow(p.values, cmap="RdYlGn", vmin=0.9, vmax=1.0, aspect="auto")
    ax.set_yticks(range(len(p.index)), p.index)
    ax.set_xticks(range(len(p.columns)), [names.get(str(t), str(t)) for t in p.columns])
    for i in range(p.shape[0]):
        for j in range(p.shape[1]):
            ax.text(j, i, f"{p.values[i, j]:.1%}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, label="standardized / rows in")
    ax.set_title("Data-quality scorecard: standardized rate per dataset and center")
    return _fig_png(fig)


CHARTS = (("Visit trend", chart_visits), ("Revenue mix", chart_revenue),
          ("Chronic-disease management", chart_chronic), ("Data quality", chart_dq))


def render(wh: Warehouse) -> str:
    """The report as one HTML string (no external resources)."""
    stamp = datetime.now().isoformat(timespec="seconds")
    parts = [f"<h1>hisx marts report</h1><p>generated {stamp} from "
             f"{html.escape(wh.dialect)}</p>"]
    for title, fn in CHARTS:
        b64 = base64.b64encode(fn(wh)).decode("ascii")
        parts.append(f"<h2>{html.escape(title)}</h2>"
                     f'<img alt="{html.escape(title)}" src="data:image/png;base64,{b64}">')
    centers = wh.query_df("SELECT tenant, center_name, his_vendor FROM dim_center "
                          "ORDER BY tenant")
    centers.insert(0, "label", [f"C{i + 1}" for i in range(len(centers))])
    parts.insert(1, "<h2>Centers</h2>" + centers.to_html(index=False))
    mv = wh.query_df("SELECT * FROM mart_visits_monthly ORDER BY tenant, period_start")
    parts.append("<h2>Visits per center and month</h2>" + mv.to_html(index=False))
    return ("<!doctype html><html><head><meta charset='utf-8'><title>hisx report</title>"
            "<style>body{font-family:sans-serif;max-width:1000px;margin:auto}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
            "</style></head><body>" + "".join(parts) + "</body></html>")


def write_report(wh: Warehouse, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(wh), encoding="utf-8")
    return out
