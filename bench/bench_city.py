"""City scale: hisx against the COPY ceiling, the naive baseline and dlt, on the same rows.

The source is the simulator's city (``--centers`` of 250, one month, ``--visits`` a month per
center) in its own database on the PostgreSQL primary of the rig, read from the hot standby.
Generation is cached: a database whose ``bench_city_meta`` row matches is reused.

Variants, each in its own process (peak RSS = that process's ``VmHWM``), interleaved over the
repeats so machine drift hits all alike:

* ``copy``: ``COPY (SELECT * FROM t) TO STDOUT`` of every table from the standby (psycopg) —
  the ceiling;
* ``hisx-duckdb`` / ``hisx-pg``: extraction from the standby through arrow-odbc
  (``extract_configured``) → standardization of the nine datasets (quarantine, feed ledger)
  → every mart, into a fresh DuckDB file or a fresh PostgreSQL database (127.0.0.1:5432);
* ``naive``: ``pandas.read_sql`` + ``DataFrame.to_sql`` of every table into PostgreSQL, no
  standardization — what a user writes by hand;
* ``dlt``: dlt's ``sql_database`` source (pyarrow backend) → DuckDB, no standardization.

With ``HISX_BENCH_PUBLISH=1`` the hisx variants then publish their whole feed ledger to a
sink that keeps nothing (``publish_s``, outside the backfill's time and rows/s): what
publishing itself costs, envelopes built from the std rows included.

While each runs, a sampler records the longest open transaction of the variant's sessions on
the standby (``pg_stat_activity``, every 50 ms). ``--incremental`` then measures, on the
warehouse of one more hisx-duckdb backfill: one hour of city activity committed on the primary
→ extracted, standardized, marts reloaded and feed messages published to the Kafka-protocol
broker (end-to-end seconds), and a cycle with no changes.

    .venv/bin/python bench/bench_city.py --centers 31 --reps 3 --incremental
The last line of stdout is one JSON object (``bench/report.py`` renders it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path

from bench_common import ActivitySampler, PhaseRss, peak_rss_mb, summary

APP = "hisx_bench_city"
GEN_VERSION = 1  # bump when the simulator's output changes: cached sources are rebuilt
START = date(2026, 8, 1)
WH_DB = "hisx_bench_wh"
NAIVE_DB = "hisx_bench_naive"
LOCAL_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/"
CACHE = Path(__file__).resolve().parent / ".cache"
VARIANTS = ("copy", "hisx-duckdb", "hisx-pg", "naive", "dlt")


# -- the source ---------------------------------------------------------------------------------
def db_name(centers: int, visits: int) -> str:
    return f"hisx_city_{centers}c_{visits}v"


def _dsn(url: str, db: str) -> str:
    base = url.replace("postgresql+psycopg", "postgresql").rsplit("/", 1)[0]
    return f"{base}/{db}"


def _odbc(env: dict, which: str, db: str) -> str:
    return (env[f"HISX_PG_{which}_ODBC"].replace("Database=postgres;", f"Database={db};")
            + f"pqopt={{application_name={APP}}};")


def _meta_matches(env: dict, db: str, centers: int, visits: int) -> bool:
    import psycopg

    try:
        with psycopg.connect(_dsn(env["HISX_PG_PRIMARY_URL"], db), autocommit=True) as c:
            row = c.execute("SELECT centers, visits, gen_version FROM bench_city_meta").fetchone()
    except psycopg.Error:
        return False
    return tuple(row or ()) == (centers, visits, GEN_VERSION)


def prepare(rig, centers: int, visits: int) -> dict:
    """The cached city source on the primary (generated if missing), replayed on the standby."""
    import psycopg

    from hisx.connectors.source.pgsetup import FUNCTION_DDL, trigger_ddl
    from hisx.simulator import schema, simulate

    db = db_name(centers, visits)
    t0 = time.perf_counter()
    generated = False
    if not _meta_matches(rig.env, db, centers, visits):
        rig.primary(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        rig.primary(f"CREATE DATABASE {db}")
        simulate(_dsn(rig.env["HISX_PG_PRIMARY_URL"], db).replace("postgresql:", "postgresql+psycopg:"),
                 centers=centers, months=1, visits_per_month=visits, seed=42, start=START,
                 progress=False)
        with psycopg.connect(_dsn(rig.env["HISX_PG_PRIMARY_URL"], db), autocommit=True) as c:
            # the row_version contract of a live source: sequence above every row, triggers
            c.execute(FUNCTION_DDL)
            top = max(c.execute(f"SELECT coalesce(max(row_version), 0) FROM {t.name}").fetchone()[0]
                      for t in schema.TABLES)
            c.execute("SELECT setval('public.hisx_row_version_seq', %s)", (top + 1,))
            for t in schema.TABLES:
                c.execute(trigger_ddl(t))
            c.execute("ANALYZE")
            c.execute("CREATE TABLE bench_city_meta (centers int, visits int, gen_version int)")
            c.execute("INSERT INTO bench_city_meta VALUES (%s, %s, %s)",
                      (centers, visits, GEN_VERSION))
        generated = True
    rig.caught_up(timeout=600)
    with psycopg.connect(_dsn(rig.env["HISX_PG_STANDBY_URL"], db)) as c:
        rows = {t.name: c.execute(f"SELECT count(*) FROM {t.name}").fetchone()[0]
                for t in schema.TABLES}
        tenants = [{"org_code": o, "vendor": v} for o, v in c.execute(
            "SELECT org_code, his_vendor FROM organizations ORDER BY org_code").fetchall()]
    return {"db": db, "rows": rows, "total_rows": sum(rows.values()), "tenants": tenants,
            "generated": generated, "prepare_s": round(time.perf_counter() - t0, 1)}


def source_config(env: dict, src: dict) -> dict:
    return {"dialect": "postgresql", "schema": "public",
            "primary": {"name": "primary", "odbc": _odbc(env, "PRIMARY", src["db"])},
            "replicas": [{"name": "standby", "odbc": _odbc(env, "STANDBY", src["db"])}],
            "tenants": src["tenants"],
            "policies": {"on_no_healthy_replica": "fail"}}


# -- the variants (child processes) ---------------------------------------------------------------

def _recreate_local_db(name: str) -> str:
    import psycopg

    with psycopg.connect(LOCAL_PG.replace("postgresql+psycopg", "postgresql") + "postgres",
                         autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {name}")
    return LOCAL_PG + name


def run_copy(env: dict, src: dict, out: Path) -> dict:
    import psycopg

    rows = 0
    dsn = _dsn(env["HISX_PG_STANDBY_URL"], src["db"])
    with psycopg.connect(dsn, application_name=APP) as c, c.cursor() as cur:
        for t in src["rows"]:
            with cur.copy(f"COPY (SELECT * FROM {t}) TO STDOUT") as cp:
                for block in cp:
                    rows += bytes(block).count(b"\n")
    return {"rows": rows}


def hisx_backfill(env: dict, src: dict, wh_url: str) -> dict:
    """extract_configured → standardize every dataset → marts; phases in seconds."""
    from hisx.connectors.source.config import parse_source
    from hisx.connectors.warehouse import Warehouse
    from hisx.pipelines import flow, std_worker
    from hisx.pipelines.extract_sources import extract_configured
    from hisx.pipelines.standardize import DATASETS

    cfg = parse_source("city", source_config(env, src))
    tenants = [flow.Tenant(t["org_code"], t["vendor"]) for t in src["tenants"]]
    rss = PhaseRss(std_worker.worker_pids)
    rss.start()
    with Warehouse.from_url(wh_url) as wh:
        flow.ensure_warehouse(wh)
        t0 = time.perf_counter()
        rss.phase("extract")
        res = extract_configured(wh, cfg)
        t1 = time.perf_counter()
        std = []
        for d in DATASETS:
            rss.phase(f"std:{d}")
            std += flow.standardize_tenants(wh, d, tenants, now=datetime(2027, 1, 1))
        t2 = time.perf_counter()
        # standardization's worker process (hisx.pipelines.std_worker), if it ran: its own
        # peak, read before the marts stop it
        worker_mb = sum(peak_rss_mb(p) for p in std_worker.worker_pids())
        rss.phase("marts")
        flow.build_marts(wh)
        t3 = time.perf_counter()
        published = publish_all(wh) if env.get("HISX_BENCH_PUBLISH") == "1" else None
        t4 = time.perf_counter()
        rss.phase("close")
    peaks = rss.stop()
    assert all(s.conserved for s in std)
    assert all(r.endpoint == "standby" and not r.used_primary for r in res if r.rows_read)
    return {"rows": sum(r.rows_read for r in res), "extract_s": t1 - t0,
            "standardize_s": t2 - t1, "marts_s": t3 - t2,
            "std_rows_in": sum(s.rows_in for s in std),
            "quarantined": sum(s.quarantined for s in std),
            "longest_txn_s_reported": max((r.longest_txn_s for r in res), default=0.0),
            # rows above a fence that had not settled on the standby wait for the next run
            "pending_fences": sum(r.pending_fences for r in res),
            "peak_rss_mb_by_phase": peaks, "worker_peak_rss_mb": worker_mb,
            # not part of the backfill (child() takes it out of total_s): every message
            # built and booked as sent, to a sink that keeps nothing
            **({"publish_s": t4 - t3, "published": published} if published is not None
               else {})}


class _NullSink:
    """A column sink that accepts every message and keeps nothing: publishing's own cost
    (reading the ledger, building the envelopes, booking the acks) without a broker's."""

    def prepare(self, topics: list[str]) -> None:
        pass

    def send_columns(self, topics, values):
        import pyarrow as pa
        n = len(values)
        return pa.array(range(n), pa.int64()), pa.nulls(n, pa.string())

    def close(self) -> None:
        pass


def publish_all(wh) -> int:
    """Publish the whole ledger through :class:`_NullSink` in the outbox's batches."""
    from hisx.pipelines import feeds

    cfg = feeds.FeedConfig(None, CACHE / "no-outbox", batch_size=50_000)
    st = feeds.publish(wh, cfg, sink=_NullSink())
    assert st.error is None and not st.failed, st.error
    return st.acked + st.dead


def run_hisx_duckdb(env: dict, src: dict, out: Path) -> dict:
    r = hisx_backfill(env, src, f"duckdb:///{out}")
    r["warehouse_mb"] = out.stat().st_size / 1e6  # after the closing checkpoint
    return r


def run_hisx_pg(env: dict, src: dict, out: Path) -> dict:
    return hisx_backfill(env, src, _recreate_local_db(WH_DB))


def run_naive(env: dict, src: dict, out: Path) -> dict:
    import pandas as pd
    import sqlalchemy as sa

    s_eng = sa.create_engine(env["HISX_PG_STANDBY_URL"].rsplit("/", 1)[0] + "/" + src["db"],
                             connect_args={"application_name": APP})
    d_eng = sa.create_engine(_recreate_local_db(NAIVE_DB))
    rows = 0
    for t in src["rows"]:
        df = pd.read_sql(f"SELECT * FROM {t}", s_eng)
        df.to_sql(t, d_eng, if_exists="replace", index=False)
        rows += len(df)
    return {"rows": rows}


def run_dlt(env: dict, src: dict, out: Path) -> dict:
    import dlt
    from dlt.sources.sql_database import sql_database

    os.environ["RUNTIME__LOG_LEVEL"] = "WARNING"
    url = env["HISX_PG_STANDBY_URL"].rsplit("/", 1)[0] + "/" + src["db"]
    source = sql_database(credentials=url, table_names=list(src["rows"]), backend="pyarrow",
                          engine_kwargs={"connect_args": {"application_name": APP}})
    pipe = dlt.pipeline(pipeline_name=f"city_{os.getpid()}", destination=dlt.destinations.duckdb(
        str(out)), dataset_name="city", pipelines_dir=str(out.parent / f"dlt_{os.getpid()}"))
    info = pipe.run(source, write_disposition="replace")
    info.raise_on_failed_jobs()
    rows = sum(pipe.last_trace.last_normalize_info.row_counts.get(t, 0) for t in src["rows"])
    return {"rows": rows}


RUNNERS = {"copy": run_copy, "hisx-duckdb": run_hisx_duckdb, "hisx-pg": run_hisx_pg,
           "naive": run_naive, "dlt": run_dlt}


def child(variant: str, src_file: str, out: str) -> None:
    os.environ.setdefault("HISX_PSEUDO_KEY", "bench-only-key-0000000000000000")
    src = json.loads(Path(src_file).read_text())
    t0 = time.perf_counter()
    r = RUNNERS[variant](dict(os.environ), src, Path(out))
    r["total_s"] = time.perf_counter() - t0 - r.get("publish_s", 0.0)
    # the process's own peak, or with its standardization worker's at the same moment
    # (sampled by phase), whichever is higher; each one's own peak is kept beside it
    r["main_peak_rss_mb"] = peak_rss_mb()
    r["peak_rss_mb"] = max([r["main_peak_rss_mb"], *r.get("peak_rss_mb_by_phase", {}).values()])
    print(json.dumps(r))


# -- the parent -------------------------------------------------------------------------------

def spawn(rig, variant: str, src_file: Path, rep: int) -> dict:
    out = CACHE / f"city_out_{variant}_{rep}.duckdb"
    for p in (out, Path(f"{out}.wal")):
        p.unlink(missing_ok=True)
    sampler = ActivitySampler(rig.standby_dsn, APP)
    sampler.start()
    try:
        proc = subprocess.run([sys.executable, __file__, "--child", variant, str(src_file),
                               str(out)], env={**os.environ, **rig.env}, text=True,
                              capture_output=True)
    finally:
        longest = sampler.stop()
    if proc.returncode:
        raise RuntimeError(f"{variant} failed:\n{proc.stderr[-3000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    r["longest_txn_s"] = round(longest, 3)
    r["rep"] = rep
    for p in (out, Path(f"{out}.wal")):
        p.unlink(missing_ok=True)
    print(f"  {variant} rep {rep}: {r['rows']:,} rows in {r['total_s']:.1f}s "
          f"({r['rows'] / r['total_s']:,.0f} rows/s), peak RSS {r['peak_rss_mb']:.0f} MB, "
          f"longest txn {longest:.2f}s", file=sys.stderr, flush=True)
    return r



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--centers", type=int, default=31)
    ap.add_argument("--visits", type=int, default=18000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--incremental", action="store_true")
    ap.add_argument("--note", default="", help="a line for BENCHMARKS.md (how it was run)")
    ap.add_argument("--child", nargs=3, metavar=("VARIANT", "SRC", "OUT"))
    a = ap.parse_args()
    if a.child:
        child(*a.child)
        return
    from hisx.connectors.source import pgrig

    rig = pgrig.acquire()
    CACHE.mkdir(parents=True, exist_ok=True)
    src = prepare(rig, a.centers, a.visits)
    src_file = CACHE / f"{src['db']}.json"
    src_file.write_text(json.dumps(src))
    print(f"source {src['db']}: {src['total_rows']:,} rows ({'generated' if src['generated'] else 'cached'}"
          f", {src['prepare_s']} s)", file=sys.stderr, flush=True)
    variants = [v for v in a.variants.split(",") if v]
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for rep in range(a.reps):
        for v in variants:
            runs[v].append(spawn(rig, v, src_file, rep))
    results = {}
    for v, all_runs in runs.items():
        # a run that read fewer rows than the source holds is reported, never averaged in
        rs = [r for r in all_runs if r["rows"] == src["total_rows"]] or all_runs
        rates = [r["rows"] / r["total_s"] for r in rs]
        results[v] = {"rows": rs[0]["rows"], "complete_runs": len(rs),
                      "incomplete_runs": [r for r in all_runs if r["rows"] != src["total_rows"]],
                      "runs": [{k: (round(x, 3) if isinstance(x, float) else x)
                                for k, x in r.items()} for r in all_runs],
                      "rows_per_s": {"median": round(statistics.median(rates)),
                                     "min": round(min(rates)), "max": round(max(rates))},
                      "total_s": summary(rs, "total_s"),
                      "peak_rss_mb": summary(rs, "peak_rss_mb"),
                      "longest_txn_s": max(r["longest_txn_s"] for r in rs)}
        for k in ("extract_s", "standardize_s", "marts_s"):
            if k in rs[0]:
                results[v][k] = summary(rs, k)
    med = {v: r["rows_per_s"]["median"] for v, r in results.items()}
    ratios = {}
    for h in ("hisx-duckdb", "hisx-pg"):
        for base in ("copy", "naive", "dlt"):
            if h in med and base in med:
                ratios[f"{h}/{base}"] = round(med[h] / med[base], 3)
    out = {"bench": "city", "date": datetime.now().isoformat(timespec="seconds"),
           "cpus": os.cpu_count(), "source": {k: src[k] for k in ("db", "rows", "total_rows")}
           | {"centers": a.centers, "visits_per_month": a.visits}, "reps": a.reps,
           "results": results, "ratios": ratios, "note": a.note}
    if a.incremental:
        from bench_city_incremental import incremental

        out["incremental"] = incremental(rig, src, reps=a.reps)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
