"""City scale, growth curve: the hisx backfill (DuckDB warehouse) and the COPY ceiling at
several city sizes, to show time linear in rows and peak RSS flat.

Each size is the cached simulator city of ``bench_city`` (``--centers`` each; 250 is the whole
city, 31/62/125 its 1/8, 1/4, 1/2). Per size: one COPY run and ``--reps`` hisx runs, each in its
own process. Writes the chart to ``--png`` (rows vs seconds and peak RSS).

    .venv/bin/python bench/bench_growth.py --centers 31 62 125 250
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_city import CACHE, prepare, spawn  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def chart(points: list[dict], png: Path) -> None:
    """Time and peak RSS vs rows: this run's points joined by a line, points merged from an
    earlier run (``from`` not "this run") drawn apart, since runs on different nights and
    code are not on one curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs: dict[str, list[dict]] = {}
    for p in points:
        runs.setdefault(p.get("from", "this run"), []).append(p)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for label, ps in runs.items():
        ours = label.startswith("this run")
        style = dict(marker="o", linestyle="-" if ours else "none",
                     fillstyle="full" if ours else "none")
        rows = [p["rows"] / 1e6 for p in ps]
        a.plot(rows, [p["hisx_s"] for p in ps], label=f"hisx, {label}", **style)
        b.plot(rows, [p["hisx_rss_mb"] for p in ps], label=label, **style)
        if ours:
            a.plot(rows, [p["copy_s"] for p in ps], "s--", label=f"COPY ceiling, {label}")
    a.set_xlabel("source rows (millions)")
    a.set_ylabel("seconds")
    a.set_title("time vs rows")
    a.legend(fontsize=7)
    a.grid(alpha=0.3)
    b.axhline(1024, color="grey", linestyle=":", label="1 GB target")
    b.set_xlabel("source rows (millions)")
    b.set_ylabel("peak RSS (MB)")
    b.set_title("hisx peak RSS vs rows")
    b.set_ylim(bottom=0)
    b.legend(fontsize=7)
    b.grid(alpha=0.3)
    fig.suptitle(f"hisx city backfill growth ({datetime.now():%Y-%m-%d})")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--centers", type=int, nargs="+", default=[31, 62, 125, 250])
    ap.add_argument("--visits", type=int, default=18000)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--png", type=Path, default=ROOT / "docs" / "bench" / "growth.png")
    ap.add_argument("--with-points", type=Path, metavar="LOG",
                    help="also chart the points of an earlier growth run's log (a run split "
                         "in two on a machine without disk for every size at once)")
    ap.add_argument("--note", default="", help="said under the table in BENCHMARKS.md")
    ap.add_argument("--drop-source", action="store_true",
                    help="drop each size's cached source database once measured (frees "
                         "its disk; the next run generates it again)")
    a = ap.parse_args()
    from hisx.connectors.source import pgrig

    rig = pgrig.acquire()
    CACHE.mkdir(parents=True, exist_ok=True)
    points = []
    if a.with_points:
        from report import last_json  # bench/ is on sys.path (see the imports above)

        earlier = last_json(a.with_points.read_text()) or {}
        points = [p for p in earlier.get("points", []) if p["centers"] not in a.centers]
        for p in points:  # each keeps its s/row ratio from its own run, and says which run
            p.setdefault("from", f"the growth run of {earlier.get('date', '?')}")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT).stdout.strip()
    ours: list[dict] = []
    for n in sorted(a.centers):
        src = prepare(rig, n, a.visits)
        src_file = CACHE / f"{src['db']}.json"
        src_file.write_text(json.dumps(src))
        print(f"size {n} centers: {src['total_rows']:,} rows", file=sys.stderr, flush=True)
        copy = spawn(rig, "copy", src_file, 0)
        runs = [spawn(rig, "hisx-duckdb", src_file, r) for r in range(a.reps)]
        secs = statistics.median(r["total_s"] for r in runs)
        ours.append({
            "centers": n, "rows": src["total_rows"], "from": f"this run (code {commit})", "copy_s": round(copy["total_s"], 2),
            "hisx_s": round(secs, 2), "hisx_rows_per_s": round(src["total_rows"] / secs),
            "share_of_copy": round(copy["total_s"] / secs, 3),
            "hisx_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in runs)),
            "phases_s": {k: round(statistics.median(r[k] for r in runs), 2)
                         for k in ("extract_s", "standardize_s", "marts_s")},
            "longest_txn_s": max(r["longest_txn_s"] for r in runs),
            # where the peak is (the first repeat's phases)
            "peak_rss_mb_by_phase": runs[0].get("peak_rss_mb_by_phase")})
        if a.drop_source:
            rig.primary(f"DROP DATABASE IF EXISTS {src['db']} WITH (FORCE)")
    base = min(ours, key=lambda p: p["rows"])
    for p in ours:  # seconds per row, relative to this run's smallest size: 1.0 = linear
        p["sec_per_row_vs_smallest"] = round((p["hisx_s"] / p["rows"]) /
                                             (base["hisx_s"] / base["rows"]), 3)
    points = sorted(points + ours, key=lambda p: p["rows"])
    chart(points, a.png)
    print(json.dumps({"bench": "growth", "date": datetime.now().isoformat(timespec="seconds"),
                      "reps": a.reps, "png": str(a.png.relative_to(ROOT)), "note": a.note,
                      "points": points}, indent=2))


if __name__ == "__main__":
    main()
