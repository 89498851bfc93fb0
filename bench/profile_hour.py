"""Where an incremental hour's time goes: one hour of city activity replayed on copies of one
backfilled warehouse, per phase, per mart, with a timed CHECKPOINT after each phase.

A profiling harness, not a benchmark (single runs, no baseline: the figures of record are
``bench_city_incremental``'s). Its first run for a size backfills a warehouse from a scratch
copy of the cached city source and appends one hour (``--hour``) to that copy; both are kept
(``bench/.cache/hour_<N>c/``, the scratch database in the bench rig), so each later run only
copies the warehouse and replays the hour: extract → standardize → marts → publish, in
minutes instead of the ~30 the backfill takes at 250 centers. Run in the bench rig::

    bash scripts/bench.sh .venv/bin/python bench/profile_hour.py --centers 250 --reps 2
    bash scripts/bench.sh .venv/bin/python bench/profile_hour.py --centers 250 --py-spy

``--reset`` drops the kept state. Disk: one warehouse copy per run beside the snapshot
(~11 GB each at 250 centers; the copy is removed after the run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

HOUR = datetime(2026, 9, 1, 9, 0)


def _state(centers: int) -> Path:
    from bench_city import CACHE

    return CACHE / f"hour_{centers}c"


def prepare(rig, centers: int, hour: datetime) -> dict:
    """The kept snapshot (backfilled warehouse, ledger acked, checkpointed) and the scratch
    source holding the hour; made once per size."""
    import psycopg

    from bench_city import _dsn, hisx_backfill
    from bench_city import prepare as prepare_source
    from bench_common import require_disk
    from hisx.connectors.warehouse import Warehouse
    from hisx.simulator import append_activity

    state = _state(centers)
    meta_file = state / "meta.json"
    if meta_file.exists():
        return json.loads(meta_file.read_text())
    state.mkdir(parents=True, exist_ok=True)
    src = prepare_source(rig, centers, 18000)
    scratch = dict(src, db=src["db"] + "_prof")
    rig.primary(f"DROP DATABASE IF EXISTS {scratch['db']} WITH (FORCE)")
    # the scratch copy on the primary and on the standby, the snapshot and one replay's copy
    require_disk(rig, src["db"], state, 4.5, "profile_hour's first run")
    rig.primary(f"CREATE DATABASE {scratch['db']} TEMPLATE {src['db']} STRATEGY FILE_COPY")
    rig.caught_up(timeout=600)
    env = {**os.environ, **rig.env}
    snap = state / "after_backfill.duckdb"
    print(f"profile_hour: backfilling {centers} centers into {snap}", file=sys.stderr, flush=True)
    backfill = hisx_backfill(env, scratch, f"duckdb:///{snap}")
    with Warehouse.from_url(f"duckdb:///{snap}") as wh:  # the platform has the backfill
        wh.execute("UPDATE feed_ledger SET state = 'acked', acked_at = now()")
        wh.execute("CHECKPOINT")
    url = _dsn(env["HISX_PG_PRIMARY_URL"], scratch["db"])
    m = append_activity(url.replace("postgresql:", "postgresql+psycopg:"), start=hour, hours=1,
                        seed=100, centers=centers, visits_per_month=18000)
    with psycopg.connect(url) as c:
        visits = c.execute("SELECT count(*) FROM registrations WHERE reg_time >= %s AND "
                           "reg_time < %s + interval '1 hour'", (hour, hour)).fetchone()[0]
    meta = {"src": scratch, "hour": hour.isoformat(), "visits_in_hour": visits,
            "rows_committed": m.total_rows, "backfill_s": round(sum(
                backfill[k] for k in ("extract_s", "standardize_s", "marts_s")), 1),
            "backfill_peak_rss_mb_by_phase": backfill["peak_rss_mb_by_phase"]}
    meta_file.write_text(json.dumps(meta))
    return meta


def replay(rig, meta: dict, publish: bool) -> dict:
    """Copy the snapshot, replay the hour on it; seconds per phase, checkpoint and mart."""
    from bench_city import source_config
    from hisx.connectors.source.config import parse_source
    from hisx.connectors.warehouse import Warehouse
    from hisx.marts import runner
    from hisx.pipelines import feeds, flow
    from hisx.pipelines.extract_sources import extract_configured
    from hisx.pipelines.standardize import DATASETS

    env = {**os.environ, **rig.env}
    src = meta["src"]
    state = Path(_state(len(src["tenants"])))
    run = state / "run.duckdb"
    shutil.copyfile(state / "after_backfill.duckdb", run)
    per_mart: dict[str, float] = defaultdict(float)
    load_many = runner.load_mart_many

    depth = [0]

    def timed(wh, name, *a, **k):  # load_mart_many calls itself per batch of centers
        depth[0] += 1
        t = time.perf_counter()
        try:
            return load_many(wh, name, *a, **k)
        finally:
            depth[0] -= 1
            if not depth[0]:
                per_mart[name] += time.perf_counter() - t

    runner.load_mart_many = timed
    out: dict = {}
    try:
        rig.caught_up(timeout=120)
        cfg = parse_source("city", source_config(env, src))
        tenants = [flow.Tenant(t["org_code"], t["vendor"]) for t in src["tenants"]]
        with Warehouse.from_url(f"duckdb:///{run}") as wh:
            flow.ensure_warehouse(wh)  # as the Dagster resource does on open (migrations)

            def phase(name, fn):
                t = time.perf_counter()
                r = fn()
                out[f"{name}_s"] = round(time.perf_counter() - t, 2)
                t = time.perf_counter()
                wh.execute("CHECKPOINT")
                out[f"{name}_checkpoint_s"] = round(time.perf_counter() - t, 2)
                return r

            res = phase("extract", lambda: extract_configured(wh, cfg))
            std = phase("standardize", lambda: [
                s for d in DATASETS for s in flow.standardize_tenants(wh, d, tenants)])
            phase("marts", lambda: flow.build_marts(wh))
            if publish:
                pub = phase("publish", lambda: feeds.publish(wh, feeds.FeedConfig(
                    bootstrap=env["HISX_TEST_KAFKA"], outbox_dir=state / "outbox")))
                out["published"] = pub.acked + pub.dead
        out.update(rows_read=sum(r.rows_read for r in res),
                   standardized=sum(s.standardized for s in std),
                   per_mart_s=dict(sorted(((k, round(v, 2)) for k, v in per_mart.items()),
                                          key=lambda kv: -kv[1])))
    finally:
        runner.load_mart_many = load_many
        for p in (run, Path(f"{run}.wal")):
            p.unlink(missing_ok=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--centers", type=int, default=31)
    ap.add_argument("--hour", type=datetime.fromisoformat, default=HOUR)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--no-publish", action="store_true")
    ap.add_argument("--py-spy", action="store_true", help="record the replays (speedscope)")
    ap.add_argument("--reset", action="store_true")
    a = ap.parse_args()
    if a.py_spy:  # the same command without --py-spy, under py-spy
        prof = _state(a.centers) / f"hour_{int(time.time())}.speedscope.json"
        argv = [x for x in sys.argv[1:] if x != "--py-spy"]
        cmd = [str(Path(sys.executable).with_name("py-spy")), "record", "-r", "50", "-f",
               "speedscope", "-o", str(prof), "--", sys.executable, __file__, *argv]
        sys.exit(subprocess.call(cmd))
    from hisx.connectors.source import pgrig

    os.environ.setdefault("HISX_PSEUDO_KEY", "bench-only-key-0000000000000000")
    rig = pgrig.acquire()
    if a.reset:
        meta_file = _state(a.centers) / "meta.json"
        if meta_file.exists():
            db = json.loads(meta_file.read_text())["src"]["db"]
            rig.primary(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        shutil.rmtree(_state(a.centers), ignore_errors=True)
    meta = prepare(rig, a.centers, a.hour)
    runs = [replay(rig, meta, not a.no_publish) for _ in range(a.reps)]
    print(json.dumps({"centers": a.centers, **{k: v for k, v in meta.items() if k != "src"},
                      "runs": runs}, indent=1))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
