"""City scale, incremental: one hour of city activity end to end, and a cycle with no changes.

Runs on a scratch copy of the cached city source (``CREATE DATABASE … TEMPLATE … STRATEGY
FILE_COPY``, so the cache stays as generated) and on a warehouse backfilled from it by hisx
(``bench_city.hisx_backfill``). The backfill's feed messages are marked acknowledged first —
the regional platform already has them — so each cycle publishes exactly the hour's messages.

One cycle = wait for the standby to replay the primary → the source sensor's probe (per-center
high-water marks on the standby, only rows above the previous tick's lowest mark) → for the
changed centers only: ``extract_configured`` → standardize every dataset → reload the dirty
mart days → publish the pending feed messages to the Kafka-protocol broker
(``HISX_TEST_KAFKA``, started by the rig). The timer of an hour's cycle starts when the
simulator has committed the hour on the primary; a no-change cycle ends after the probe.

Two series of hours: the morning peak (09:00, 10:00, 11:00 of 1 September: the simulator puts
62 % of a weekday's visits in 08:00-11:30, so these hours hold ≈5× the city's average hour)
and the late afternoon (16:00-17:00 of 1, 2 and 3 September: ≈1/3 of a peak hour, the
simulated hour closest to the issue's ≈6,000 visits, which is the average of all 24 hours).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

HOUR0 = datetime(2026, 9, 1, 9, 0)
#: the late-afternoon hours' starts, after the peak series (arrivals must come in time order)
LATE0 = datetime(2026, 9, 1, 16, 0)


class Probe:
    """The source sensor's check: per-center high-water marks on the standby, reading only
    rows above the previous tick's lowest mark (``hisx.orchestration.sources.high_waters``)."""

    def __init__(self, env: dict, src: dict) -> None:
        import sqlalchemy as sa

        from bench_city import _dsn

        self.engine = sa.create_engine(
            _dsn(env["HISX_PG_STANDBY_URL"], src["db"]).replace("postgresql:", "postgresql+psycopg:"))
        self.centers = [t["org_code"] for t in src["tenants"]]
        self.prev: dict[str, dict[str, int]] = {}

    def changed(self) -> list[str]:
        from hisx.orchestration.sensors import _since
        from hisx.orchestration.sources import high_waters
        from hisx.simulator.schema import TABLES

        since = _since(self.prev, self.centers)
        marks = high_waters(self.engine, TABLES, since=since)
        out = sorted({c for t, m in marks.items() for c, v in m.items()
                      if v > self.prev.get(t, {}).get(c, 0)})
        self.prev = {t: {**({} if t in since else dict.fromkeys(self.centers, 0)),
                         **self.prev.get(t, {}), **m} for t, m in marks.items()}
        return out


def cycle(env: dict, src: dict, wh_url: str, rig, probe: Probe) -> dict:
    """Replay wait → probe → for the changed centers only: extract → standardize → marts →
    publish. With nothing changed it ends after the probe."""
    from bench_city import source_config
    from hisx.connectors.source.config import parse_source
    from hisx.connectors.warehouse import Warehouse
    from hisx.pipelines import feeds, flow
    from hisx.pipelines.extract_sources import extract_configured
    from hisx.pipelines.standardize import DATASETS

    t0 = time.perf_counter()
    rig.caught_up(timeout=120)
    t1 = time.perf_counter()
    changed = probe.changed()
    t2 = time.perf_counter()
    out = {"centers_changed": len(changed), "rows_read": 0, "standardized": 0, "published": 0,
           "replay_wait_s": t1 - t0, "probe_s": t2 - t1, "extract_s": 0.0,
           "standardize_s": 0.0, "marts_s": 0.0, "publish_s": 0.0}
    if changed:
        cfg = parse_source("city", source_config(env, src))
        tenants = [flow.Tenant(t["org_code"], t["vendor"]) for t in src["tenants"]
                   if t["org_code"] in set(changed)]
        with Warehouse.from_url(wh_url) as wh:
            res = extract_configured(wh, cfg, tenants=changed)
            t3 = time.perf_counter()
            std = [s for d in DATASETS for s in flow.standardize_tenants(wh, d, tenants)]
            t4 = time.perf_counter()
            flow.build_marts(wh)
            t5 = time.perf_counter()
            pub = feeds.publish(wh, feeds.FeedConfig(
                bootstrap=env["HISX_TEST_KAFKA"], outbox_dir=Path(wh_url[10:]).parent / "outbox"))
            t6 = time.perf_counter()
        if pub.failed:
            raise RuntimeError(f"publish failed: {pub.error}")
        out.update(rows_read=sum(r.rows_read for r in res),
                   standardized=sum(s.standardized for s in std), published=pub.acked + pub.dead,
                   extract_s=t3 - t2, standardize_s=t4 - t3, marts_s=t5 - t4, publish_s=t6 - t5)
    out["total_s"] = time.perf_counter() - t0
    return out


def incremental(rig, src: dict, reps: int = 3, late_reps: int = 3) -> dict:
    """Backfill a warehouse, then ``reps`` peak hours and ``late_reps`` late-afternoon hours,
    each: one hour committed → cycle; a no-change cycle."""
    import psycopg

    from bench_city import CACHE, _dsn, hisx_backfill
    from bench_common import require_disk
    from hisx.connectors.warehouse import Warehouse
    from hisx.simulator import append_activity

    os.environ.setdefault("HISX_PSEUDO_KEY", "bench-only-key-0000000000000000")
    env = {**os.environ, **rig.env}
    scratch = dict(src, db=src["db"] + "_inc")
    rig.primary(f"DROP DATABASE IF EXISTS {scratch['db']} WITH (FORCE)")
    # the scratch copy on the primary and on the standby, and a warehouse about its size
    require_disk(rig, src["db"], CACHE, 3.5, "the incremental benchmark")
    rig.primary(f"CREATE DATABASE {scratch['db']} TEMPLATE {src['db']} STRATEGY FILE_COPY")
    wh_path = CACHE / "city_incremental.duckdb"
    for p in (wh_path, Path(f"{wh_path}.wal")):
        p.unlink(missing_ok=True)
    wh_url = f"duckdb:///{wh_path}"
    try:
        rig.caught_up(timeout=600)
        backfill = hisx_backfill(env, scratch, wh_url)
        with Warehouse.from_url(wh_url) as wh:  # the platform already has the backfill
            wh.execute("UPDATE feed_ledger SET state = 'acked', acked_at = now()")
        hours, late, idle = [], [], []
        probe = Probe(env, scratch)
        probe.changed()  # the sensor's first tick: the marks the backfill read up to
        url = _dsn(env["HISX_PG_PRIMARY_URL"], scratch["db"]).replace(
            "postgresql:", "postgresql+psycopg:")
        starts = ([(hours, HOUR0 + timedelta(hours=r)) for r in range(reps)]
                  + [(late, LATE0 + timedelta(days=r)) for r in range(late_reps)])
        for rep, (series, start) in enumerate(starts):
            m = append_activity(url, start=start, hours=1, seed=100 + rep,
                                centers=len(src["tenants"]),
                                visits_per_month=src.get("visits", 18000))
            with psycopg.connect(_dsn(env["HISX_PG_PRIMARY_URL"], scratch["db"])) as c:
                visits = c.execute("SELECT count(*) FROM registrations WHERE reg_time >= %s "
                                   "AND reg_time < %s", (start, start + timedelta(hours=1))
                                   ).fetchone()[0]
            h = cycle(env, scratch, wh_url, rig, probe)
            h["visits_in_hour"] = visits
            h["start"] = start.isoformat(timespec="minutes")
            h["rows_committed"] = m.total_rows + sum(
                n for per in m.updated.values() for n in per.values())
            series.append(h)
            idle.append(cycle(env, scratch, wh_url, rig, probe))
            print(f"  incremental {h['start']}: hour {h['total_s']:.1f}s ({visits:,} visits, "
                  f"{h['rows_read']:,} rows, {h['published']:,} messages), no change "
                  f"{idle[-1]['total_s']:.1f}s", file=sys.stderr, flush=True)
    finally:
        rig.primary(f"DROP DATABASE IF EXISTS {scratch['db']} WITH (FORCE)")
        for p in (wh_path, Path(f"{wh_path}.wal")):
            p.unlink(missing_ok=True)

    def med(runs: list[dict], k: str) -> dict:
        v = [r[k] for r in runs]
        return {"median": round(statistics.median(v), 2), "min": round(min(v), 2),
                "max": round(max(v), 2)}

    def series(runs: list[dict]) -> dict:
        """Medians of a series' phases; its first hour's counts; every hour's visits."""
        return {k: med(runs, k) for k in keys} | {
            "rows_read": runs[0]["rows_read"], "published": runs[0]["published"],
            "centers_changed": runs[0]["centers_changed"],
            "visits_in_hour": runs[0]["visits_in_hour"],
            "visits_per_hour": [r["visits_in_hour"] for r in runs],
            "starts": [r["start"] for r in runs]}

    keys = ("replay_wait_s", "probe_s", "extract_s", "standardize_s", "marts_s", "publish_s",
            "total_s")
    return {"backfill_rows": backfill["rows"], "reps": reps,
            "backfill": {k: (round(v, 1) if isinstance(v, float) else v)
                         for k, v in backfill.items()},
            "hour": series(hours),
            **({"late_hour": series(late), "late_reps": len(late)} if late else {}),
            "no_change": {k: med(idle, k) for k in keys} | {
                "rows_read": max(r["rows_read"] for r in idle),
                "centers_changed": max(r["centers_changed"] for r in idle)},
            "targets": {"hour_lt_30s": statistics.median(h["total_s"] for h in hours) < 30,
                        "no_change_lt_5s": statistics.median(r["total_s"] for r in idle) < 5,
                        **({"late_hour_lt_30s": statistics.median(h["total_s"] for h in late) < 30}
                           if late else {})}}


def main() -> None:
    """Standalone: ``--centers N`` of the cached city (prepared by bench_city if missing)."""
    import argparse
    import json

    from bench_city import CACHE, prepare
    from hisx.connectors.source import pgrig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--centers", type=int, default=31)
    ap.add_argument("--visits", type=int, default=18000)
    ap.add_argument("--reps", type=int, default=3, help="peak hours (09:00, 10:00, 11:00)")
    ap.add_argument("--late-reps", type=int, default=3,
                    help="late-afternoon hours (16:00 of 1, 2, 3 September)")
    ap.add_argument("--note", default="")
    a = ap.parse_args()
    rig = pgrig.acquire()
    CACHE.mkdir(parents=True, exist_ok=True)
    src = prepare(rig, a.centers, a.visits)
    out = {"bench": "city_incremental", "date": datetime.now().isoformat(timespec="seconds"),
           "centers": a.centers, "note": a.note,
           "incremental": incremental(rig, src, a.reps, a.late_reps)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
