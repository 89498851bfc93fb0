"""End-to-end pipeline rows/s against the naive baseline, in the same run.

hisx: extraction (row-version cursor) → standardization of all nine datasets (+ quarantine,
feed ledger) → every mart, into a fresh DuckDB warehouse. Naive baseline: what a user would
write by hand, ``pandas.read_sql`` + ``DataFrame.to_sql`` of the same tables, no
standardization. Each variant runs in its own subprocess (peak RSS = that process's max RSS),
median of ``--reps`` with min and max. The source is generated once and cached.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"


def source(centers: int, months: int, visits: int) -> Path:
    path = CACHE / f"src_{centers}c_{months}m_{visits}v.sqlite"
    if not path.exists():
        from hisx.simulator import simulate

        CACHE.mkdir(parents=True, exist_ok=True)
        simulate(f"sqlite:///{path}", centers=centers, months=months, visits_per_month=visits,
                 seed=42, start=date(2026, 8, 1), progress=False)
    return path


def run_hisx(src: Path, out: Path) -> dict:
    import sqlalchemy as sa

    from hisx.connectors.warehouse import Warehouse
    from hisx.pipelines import flow
    from hisx.pipelines.standardize import DATASETS

    engine = sa.create_engine(f"sqlite:///{src}")
    wh = Warehouse.from_url(f"duckdb:///{out}")
    flow.ensure_warehouse(wh)
    tenants = flow.discover_tenants(engine)
    t0 = time.perf_counter()
    res = flow.extract(engine, wh, source="his", tenants=tenants)
    t1 = time.perf_counter()
    stats = [s for d in DATASETS for s in flow.standardize_tenants(wh, d, tenants,
                                                                   now=datetime(2027, 1, 1))]
    t2 = time.perf_counter()
    flow.build_marts(wh)
    t3 = time.perf_counter()
    wh.close()
    return {"rows": sum(r.rows_read for r in res), "extract_s": t1 - t0,
            "standardize_s": t2 - t1, "marts_s": t3 - t2, "total_s": t3 - t0,
            "std_rows": sum(s.rows_in for s in stats)}


def run_naive(src: Path, out: Path) -> dict:
    import pandas as pd
    import sqlalchemy as sa

    from hisx.simulator.schema import TABLES

    s_eng = sa.create_engine(f"sqlite:///{src}")
    d_eng = sa.create_engine(f"sqlite:///{out}")
    t0 = time.perf_counter()
    rows = 0
    for t in TABLES:
        df = pd.read_sql(f"SELECT * FROM {t.name}", s_eng)
        df.to_sql(t.name, d_eng, if_exists="replace", index=False)
        rows += len(df)
    return {"rows": rows, "total_s": time.perf_counter() - t0}


def child(variant: str, src: str, out: str) -> None:
    """Run one variant in this process and print its figures plus peak RSS."""
    os.environ.setdefault("HISX_PSEUDO_KEY", "bench-only-key-0000000000000000")
    fn = run_hisx if variant == "hisx" else run_naive
    r = fn(Path(src), Path(out))
    r["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(r))


def spawn(variant: str, src: Path, rep: int) -> dict:
    out = CACHE / f"out_{variant}_{rep}.{'duckdb' if variant == 'hisx' else 'sqlite'}"
    for p in (out, Path(str(out) + ".wal")):
        p.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, __file__, "--child", variant, str(src), str(out)],
                          capture_output=True, text=True, check=True)
    out.unlink(missing_ok=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summary(runs: list[dict], key: str) -> dict:
    vals = [r[key] for r in runs]
    return {"median": round(statistics.median(vals), 3), "min": round(min(vals), 3),
            "max": round(max(vals), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--centers", type=int, default=3)
    ap.add_argument("--months", type=int, default=1)
    ap.add_argument("--visits", type=int, default=18000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--child", nargs=3, metavar=("VARIANT", "SRC", "OUT"))
    a = ap.parse_args()
    if a.child:
        child(*a.child)
        return
    src = source(a.centers, a.months, a.visits)
    hisx, naive = [], []
    for rep in range(a.reps):  # interleaved, so drift on a shared machine hits both alike
        hisx.append(spawn("hisx", src, rep))
        naive.append(spawn("naive", src, rep))
    rows = hisx[0]["rows"]
    h_rate = rows / statistics.median(r["total_s"] for r in hisx)
    n_rate = naive[0]["rows"] / statistics.median(r["total_s"] for r in naive)
    print(json.dumps({
        "bench": "pipeline", "date": datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {os.cpu_count()} cpu",
        "source": {"centers": a.centers, "months": a.months, "visits_per_month": a.visits,
                   "rows": rows},
        "reps": a.reps,
        "hisx_rows_per_s": round(h_rate),
        "naive_rows_per_s": round(n_rate),
        "ratio_hisx_vs_naive": round(h_rate / n_rate, 2),
        "hisx_phases_s": {k: summary(hisx, k) for k in
                          ("extract_s", "standardize_s", "marts_s", "total_s")},
        "naive_total_s": summary(naive, "total_s"),
        "peak_rss_mb": {"hisx": summary(hisx, "peak_rss_mb"),
                        "naive": summary(naive, "peak_rss_mb")},
        "note": "hisx also standardizes 9 datasets, quarantines, writes the feed ledger and "
                "loads every mart; the naive copy does none of that",
    }, indent=2))


if __name__ == "__main__":
    main()
