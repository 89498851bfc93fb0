"""Standardization throughput: vectorized ``standardize()`` vs per-row jsonschema validation.

``hisx`` times the whole ``standardize()`` call (NFKC text, local-code mapping, every
validator, dedup, quarantine split, output frame) on clean sample rows. The baseline times only
validating each already-standardized row against the dataset's JSON Schema with a prebuilt
``Draft202012Validator`` (what a row-at-a-time checker would do *before* any mapping). The
ratio is hisx rows/s over baseline rows/s. Medians of 5 runs.

    .venv/bin/python bench/bench_standardize.py [--rows 50000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import datetime

from jsonschema import Draft202012Validator

from hisx.pipelines.standardize import json_records, standardize
from hisx.standards.maps import load_maps
from hisx.standards.samples import sample_person_keys, sample_source
from hisx.standards.schemas import load_schema

TENANT = "BENCH-ORG"
NOW = datetime(2027, 1, 1)


def _times(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def bench(dataset: str, rows: int, repeats: int) -> dict[str, float]:
    maps = load_maps(TENANT, "vendor_a")
    df = sample_source(dataset, rows, maps, tenant=TENANT)
    keys = sample_person_keys(rows, TENANT)

    def run():
        return standardize(dataset, df, tenant=TENANT, vendor="vendor_a", load_id="bench",
                           now=NOW, person_keys=keys, maps=maps)

    res = run()
    assert len(res.standardized) == rows, res.counts
    records = json_records(res.standardized)
    validator = Draft202012Validator(load_schema(dataset))

    def per_row():
        for rec in records:
            if not validator.is_valid(rec):
                raise AssertionError("sample row does not fit its schema")

    hisx, per = _times(run, repeats), _times(per_row, repeats)
    t_hisx, t_rows = statistics.median(hisx), statistics.median(per)
    return {"hisx_rows_s": rows / t_hisx, "jsonschema_rows_s": rows / t_rows,
            "ratio": t_rows / t_hisx,
            "hisx_rows_s_min": rows / max(hisx), "hisx_rows_s_max": rows / min(hisx)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    os.environ.setdefault("HISX_PSEUDO_KEY", "bench-only-key")
    print(f"# bench_standardize  {datetime.now():%Y-%m-%d %H:%M}  {platform.node()}  "
          f"{platform.processor() or platform.machine()}  python {platform.python_version()}  "
          f"cpus {os.cpu_count()}  rows {args.rows}  median of {args.repeats}")
    print(f"{'dataset':<20}{'hisx rows/s':>14}{'jsonschema rows/s':>20}{'ratio':>8}")
    out = {}
    for dataset in ("outpatient_visit", "prescription_item"):
        r = bench(dataset, args.rows, args.repeats)
        out[dataset] = {k: round(v, 2) for k, v in r.items()}
        print(f"{dataset:<20}{r['hisx_rows_s']:>14,.0f}{r['jsonschema_rows_s']:>20,.0f}"
              f"{r['ratio']:>7.2f}x")
    print(json.dumps({"bench": "standardize", "date": datetime.now().isoformat(timespec="seconds"),
                      "rows": args.rows, "repeats": args.repeats, "results": out,
                      "target": ">= 200,000 rows/s on one core",
                      "met": all(r["hisx_rows_s"] >= 200_000 for r in out.values())}, indent=2))


if __name__ == "__main__":
    main()
