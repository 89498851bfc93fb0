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

    from hisx.orchestration.definitions import materialize_all as run_all

    ensure_demo_pseudo_key(s.home)
    os.environ.setdefault("DAGSTER_HOME", str(s.dagster_home))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    with dg.DagsterInstance.get() as instance:
        result = run_all(instance)  # the `ingest` job over every center, one run
    return result is None or result.success


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


def _tenant(wh, org_code: str):
    from hisx.pipelines.flow import Tenant

    row = wh.query_df("SELECT org_code, his_vendor, org_name FROM ods_organizations "
                      "WHERE org_code = :c", {"c": org_code})
    if row.empty:
        raise ValueError(f"unknown center {org_code!r}: not in ods_organizations")
    return Tenant(*row.iloc[0].tolist())


def cmd_quarantine(args: argparse.Namespace) -> int:
    import pandas as pd

    from hisx.connectors.warehouse import Warehouse
    from hisx.pipelines import quarantine
    from hisx.pipelines.standardize import DATASETS

    s = Settings.from_env()
    with Warehouse.from_url(s.warehouse_url) as wh, pd.option_context(
            "display.width", 200, "display.max_rows", 500, "display.max_colwidth", 80):
        if args.action == "list":
            print(quarantine.list_rows(wh, args.dataset, args.tenant, args.limit)
                  .to_string(index=False))
        elif args.action == "report":
            print("== rows by reason ==")
            print(quarantine.reason_counts(wh, args.dataset, args.tenant).to_string(index=False))
            print("\n== unmapped local codes (extend the center's map, then replay) ==")
            print(quarantine.unmapped_report(wh, args.tenant).to_string(index=False))
        else:
            ensure_demo_pseudo_key(s.home)
            datasets = [args.dataset] if args.dataset else list(DATASETS)
            tenants = ([args.tenant] if args.tenant else
                       wh.query_df("SELECT DISTINCT tenant FROM quarantine")["tenant"].tolist())
            for org in tenants:
                for ds in datasets:
                    st = quarantine.replay(wh, ds, _tenant(wh, org))
                    if st.replayed:
                        print(f"{ds} {org}: replayed {st.replayed}, moved {st.moved}, still "
                              f"quarantined {st.still_quarantined}, deduplicated "
                              f"{st.deduplicated}")
            from hisx.pipelines.flow import build_marts

            build_marts(wh)
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    """Re-read one center from the source's first row version (idempotent)."""
    import dagster as dg

    from hisx.orchestration.backfill import backfill_center

    s = Settings.from_env()
    ensure_demo_pseudo_key(s.home)
    os.environ.setdefault("DAGSTER_HOME", str(s.dagster_home))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        r = backfill_center(instance, args.center, args.source)
    print(f"backfill {r.center} from source {r.source}: forgot {r.reset.ods_rows} ODS rows and "
          f"{r.reset.cursors} cursors; ingest run {r.run_id} "
          f"{'succeeded' if r.success else 'FAILED'}; removed "
          f"{sum(x.std_rows + x.quarantine_rows for x in r.pruned)} std/quarantine rows gone "
          f"from the source; {time.perf_counter() - t0:.1f} s")
    return 0 if r.success else 1


def cmd_dictionary(args: argparse.Namespace) -> int:
    from hisx.standards.dictionary import write_dictionary

    for path in write_dictionary(Path(args.out)):
        print(path)
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

    q = sub.add_parser("quarantine", help="rows that failed standardization: list, report, "
                       "replay after a map or rule fix")
    q.add_argument("action", choices=["list", "report", "replay"])
    q.add_argument("--dataset", help="one dataset (default: all)")
    q.add_argument("--tenant", help="one center's org_code (default: all)")
    q.add_argument("--limit", type=int, default=100)
    q.set_defaults(func=cmd_quarantine)

    bf = sub.add_parser("backfill", help="re-read one center from the source's first row "
                        "version through the ingest job (idempotent)")
    bf.add_argument("--center", required=True, help="the center's org_code")
    bf.add_argument("--source", help="the source serving it (default: found from the config)")
    bf.set_defaults(func=cmd_backfill)

    std = sub.add_parser("standards", help="the data standard: data dictionary")
    std_sub = std.add_subparsers(dest="what", required=True)
    d = std_sub.add_parser("dictionary", help="write the data dictionary (Markdown + HTML)")
    d.add_argument("--out", default="docs/data-dictionary")
    d.set_defaults(func=cmd_dictionary)

    from hisx.api.cli import add_parser as add_api_parser
    from hisx.marts.cli import add_parser as add_marts_parser
    from hisx.pipelines import feeds_cli

    feeds_cli.add_parser(sub)
    add_marts_parser(sub)
    add_api_parser(sub)
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
