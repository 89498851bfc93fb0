"""The ``hisx`` command."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from hisx.config import Settings, ensure_demo_pseudo_key


def _sqlite_path(url: str) -> Path | None:
    return Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else None


def cmd_simulate(args: argparse.Namespace) -> int:
    from hisx.simulator import OfflineWindow, simulate

    s = Settings.from_env()
    url = args.url or s.source_url
    path = _sqlite_path(url)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    manifest = simulate(
        url,
        centers=args.centers,
        months=args.months,
        start=args.start,
        visits_per_month=args.visits_per_month,
        seed=args.seed,
        defect_rate=args.defect_rate,
        offline=[OfflineWindow.parse(o) for o in args.offline],
        progress=not args.quiet,
    )
    secs = time.perf_counter() - t0
    out = Path(args.manifest) if args.manifest else (path.with_suffix(".manifest.json")
                                                     if path else None)
    if out:
        out.write_text(manifest.to_json(), encoding="utf-8")
    rows = sum(sum(v.values()) for v in manifest.counts.values())
    print(f"simulated {rows:,} rows in {secs:.1f} s ({rows / secs:,.0f} rows/s) -> {url}")
    if out:
        print(f"manifest: {out}")
    return 0


def _ensure_demo_source(s: Settings) -> None:
    path = _sqlite_path(s.source_url)
    if path and not path.exists():
        print(f"generating the demo source (3 pilot centers x 3 months) at {path} ...")
        ns = build_parser().parse_args(["simulate", "--url", s.source_url])
        cmd_simulate(ns)


def materialize_all(s: Settings) -> bool:
    """Run every asset in-process on a persistent instance (visible later in the UI)."""
    import dagster as dg

    from hisx.orchestration.definitions import defs

    ensure_demo_pseudo_key(s.home)
    os.environ.setdefault("DAGSTER_HOME", str(s.dagster_home))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    job = defs.resolve_job_def("hisx_all")
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(instance=instance)
    return result.success


def cmd_run(args: argparse.Namespace) -> int:
    s = Settings.from_env()
    t0 = time.perf_counter()
    ok = materialize_all(s)
    print(f"run {'succeeded' if ok else 'FAILED'} in {time.perf_counter() - t0:.1f} s")
    return 0 if ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from hisx import report

    s = Settings.from_env()
    t0 = time.perf_counter()
    _ensure_demo_source(s)
    if not materialize_all(s):
        print("the run failed; see the Dagster logs above", file=sys.stderr)
        return 1
    report.print_demo_summary(s)
    print(f"\ndemo finished in {time.perf_counter() - t0:.1f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hisx", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    sim = sub.add_parser("simulate", help="generate the synthetic production source")
    sim.add_argument("--url", help="SQLAlchemy URL of the source (default: demo SQLite)")
    sim.add_argument("--centers", type=int, default=3)
    sim.add_argument("--months", type=int, default=3)
    sim.add_argument("--start", type=date.fromisoformat, default=date(2026, 8, 1),
                     help="first day of the simulated period (YYYY-MM-DD)")
    sim.add_argument("--visits-per-month", type=int, default=18000,
                     help="average outpatient visits per center and month")
    sim.add_argument("--seed", type=int, default=42)
    sim.add_argument("--defect-rate", type=float, default=0.03)
    sim.add_argument("--offline", action="append", default=[], metavar="CENTER:START:HOURS")
    sim.add_argument("--manifest", help="where to write the defect manifest (JSON)")
    sim.add_argument("--quiet", action="store_true")
    sim.set_defaults(func=cmd_simulate)

    run = sub.add_parser("run", help="materialize every asset once, in-process")
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", help="generate the demo source if absent, run, print results")
    demo.set_defaults(func=cmd_demo)

    from hisx.marts.cli import add_parser as add_marts_parser
    from hisx.pipelines import feeds_cli

    feeds_cli.add_parser(sub)
    add_marts_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"hisx: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
