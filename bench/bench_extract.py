"""Extraction throughput from the PostgreSQL hot standby: hisx's extraction as
``extract_configured`` runs it (``extract_parallel``: SourceExtractor per reader, keyset
pages of 50k rows, commit-safe bound, lag checks, ``max_readers=2``; the arrow-odbc path,
the same with one reader, and the pyodbc path, which always reads with one) against ``COPY … TO STDOUT`` of the same rows in the
same run (psycopg, raw blocks, one transaction: the ceiling). The warehouse landing is not
part of it.

A 2M-row ``registrations`` table (Chinese text, numeric(12,2), timestamps, 4 tenants) is
generated with SQL on the primary. Each measurement runs in its own process, so its peak RSS
(``ru_maxrss``) is that path's alone; the paths are interleaved over the repeats so machine
noise spreads evenly. The longest source transaction is sampled from ``pg_stat_activity`` on
the standby while each run goes (sessions tagged ``application_name=hisx_bench_extract``),
and for the hisx paths also taken from ``ExtractStats.longest_txn_s``.

Starts a private PG rig (scripts/rig/pg.sh) if ``HISX_PG_STANDBY_URL`` is unset and stops
it at the end. Last line of stdout: one JSON object.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time

from bench_common import ActivitySampler, peak_rss_mb

APP = "hisx_bench_extract"
SCHEMA = "bench_extract"
#: copy = the ceiling; the hisx paths run with the default policy (max_readers=2 parallel
#: readers; pyodbc reads with one regardless) and arrow-odbc also with a single reader.
PATHS = ("copy", "arrow-odbc", "arrow-odbc-1reader", "pyodbc")
TENANTS = ("310115001", "310115002", "310115003", "310115004")
TARGET_RATIO, TARGET_RSS_MB = 0.35, 500.0
DEFAULT_PATH = "arrow-odbc"


# -- the source table ---------------------------------------------------------------------------
def generate(rig, rows: int) -> None:
    """Create and fill ``bench_extract.registrations`` on the primary, wait for the standby."""
    import sqlalchemy as sa

    from hisx.connectors.source.pgsetup import FUNCTION_DDL, trigger_ddl
    from hisx.simulator import schema

    md = sa.MetaData()
    t = schema.registrations.to_metadata(md, schema=SCHEMA)
    rig.primary(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    rig.primary(f"CREATE SCHEMA {SCHEMA}")
    rig.primary(FUNCTION_DDL)
    eng = sa.create_engine(rig.env["HISX_PG_PRIMARY_URL"])
    for ix in list(t.indexes):  # bulk load first, index after
        t.indexes.discard(ix)
    md.create_all(eng)
    eng.dispose()
    orgs = "ARRAY[" + ",".join(f"'{o}'" for o in TENANTS) + "]"
    rig.primary(f"""
INSERT INTO {t.fullname} (reg_id, org_code, visit_no, patient_id, dept_code, doctor_code, reg_time,
  visit_kind, visit_type, reg_fee, status, is_deleted, updated_at, row_version)
SELECT g, ({orgs})[1 + g % {len(TENANTS)}],
  'MZ' || lpad(g::text, 10, '0'),
  (hashint4(g) & 2147483647) % 500000,
  (ARRAY['内科','外科','儿科','妇科','中医科','全科医学科','口腔科'])[1 + g % 7],
  'D' || lpad(((hashint4(g + 7) & 2147483647) % 5000)::text, 5, '0'),
  timestamp '2024-01-01 08:00:00.123456' + g * interval '13 seconds',
  (ARRAY['初诊','复诊'])[1 + g % 2],
  (ARRAY['门诊','急诊','家庭医生签约门诊'])[1 + g % 3],
  round(((hashint4(g + 3) & 2147483647) % 100000)::numeric / 997, 2),
  (ARRAY['正常','正常','正常','退号'])[1 + g % 4],
  (g % 97 = 0)::int,
  timestamp '2024-01-01 09:00:00' + g * interval '13 seconds',
  g
FROM generate_series(1, {rows}) g""")
    rig.primary(f"SELECT setval('public.hisx_row_version_seq', {rows})")
    rig.primary(f"CREATE INDEX ix_bench_rv ON {t.fullname} (row_version)")
    rig.primary(f"CREATE INDEX ix_bench_org_rv ON {t.fullname} (org_code, row_version)")
    rig.primary(trigger_ddl(t))
    rig.primary(f"VACUUM (FREEZE, ANALYZE) {t.fullname}")
    rig.caught_up(timeout=120)


# -- one measurement (child process) ----------------------------------------------------------------
def _odbc(env: dict, which: str) -> str:
    return env[f"HISX_PG_{which}_ODBC"] + f"pqopt={{application_name={APP}}};"



def worker(path: str, chunk_rows: int) -> dict:
    import psycopg

    if path != "copy":  # the COPY process stays free of pyarrow & co. (its RSS is its own)
        from hisx.connectors.source.config import parse_source
        from hisx.connectors.source.extract import CursorState, extract_parallel

    env = os.environ
    t0 = time.perf_counter()  # after the imports: connect + read only
    longest = 0.0
    if path == "copy":
        dsn = env["HISX_PG_STANDBY_URL"].replace("postgresql+psycopg", "postgresql")
        rows = 0
        with psycopg.connect(dsn, application_name=APP) as conn, conn.cursor() as cur:
            t1 = time.perf_counter()
            with cur.copy(f"COPY {SCHEMA}.registrations TO STDOUT") as cp:
                for block in cp:
                    rows += bytes(block).count(b"\n")
            longest = time.perf_counter() - t1
    else:
        cfg = parse_source("bench", {
            "dialect": "postgresql", "schema": SCHEMA, "tables": ["registrations"],
            "primary": {"name": "primary", "odbc": _odbc(env, "PRIMARY")},
            "replicas": [{"name": "standby", "odbc": _odbc(env, "STANDBY")}],
            "tenants": [{"org_code": o} for o in TENANTS],
            "policies": {"on_no_healthy_replica": "fail", "chunk_rows": chunk_rows,
                         "extraction_path": path.split("-1reader")[0],
                         "max_readers": 1 if path.endswith("-1reader") else 2},
        })
        table = cfg.table("registrations")
        rows = 0
        # what extract_configured does, minus the warehouse: every tenant, default policy
        for ev in extract_parallel(cfg, [(table, t, CursorState()) for t in cfg.tenants]):
            if ev.page is not None:
                rows += ev.page.num_rows
            else:
                s = ev.stats
                assert s.endpoint == "standby" and not s.used_primary, s
                longest = max(longest, s.longest_txn_s)
    secs = time.perf_counter() - t0
    return {"rows": rows, "seconds": secs, "peak_rss_mb": peak_rss_mb(), "longest_txn_s": longest}



def measure(rig, path: str, chunk_rows: int) -> dict:
    sampler = ActivitySampler(rig.standby_dsn, APP)
    sampler.start()
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--worker", path, "--chunk-rows", str(chunk_rows)],
            env={**os.environ, **rig.env}, check=True, stdout=subprocess.PIPE, text=True).stdout
    finally:
        sampled = sampler.stop()
    res = json.loads(out.strip().splitlines()[-1])
    res["longest_txn_s"] = max(res["longest_txn_s"], sampled)
    return res


# -- the run ------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chunk-rows", type=int, default=50_000)
    ap.add_argument("--worker", choices=PATHS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.chunk_rows)))
        return

    from hisx.connectors.source import pgrig

    started_at = time.perf_counter()
    rig = pgrig.acquire()  # from the environment (make bench) or a private rig
    try:
        t0 = time.perf_counter()
        generate(rig, a.rows)
        print(f"generated {a.rows} rows in {time.perf_counter() - t0:.1f}s "
              f"(rig {'started here' if rig.started else 'from the environment'})", file=sys.stderr)
        runs: dict[str, list[dict]] = {p: [] for p in PATHS}
        for r in range(a.repeats):
            for p in PATHS:
                m = measure(rig, p, a.chunk_rows)
                if m["rows"] != a.rows:
                    raise SystemExit(f"{p}: read {m['rows']} rows, expected {a.rows}")
                m["rows_per_s"] = m["rows"] / m["seconds"]
                runs[p].append(m)
                print(f"repeat {r + 1} {p:10s} {m['rows_per_s']:>10,.0f} rows/s "
                      f"{m['seconds']:6.2f}s rss {m['peak_rss_mb']:6.0f} MB "
                      f"longest txn {m['longest_txn_s']:.2f}s", file=sys.stderr)
        rig.primary(f"DROP SCHEMA {SCHEMA} CASCADE")
    finally:
        pgrig.release()

    results = {}
    for p, ms in runs.items():
        rates = [m["rows_per_s"] for m in ms]
        results[p] = {"rows_per_s_median": round(statistics.median(rates)),
                      "min": round(min(rates)), "max": round(max(rates)),
                      "peak_rss_mb": round(max(m["peak_rss_mb"] for m in ms), 1),
                      "longest_txn_s": round(max(m["longest_txn_s"] for m in ms), 3)}
    ceiling = results["copy"]["rows_per_s_median"]
    ratios = {p: round(results[p]["rows_per_s_median"] / ceiling, 3) for p in PATHS if p != "copy"}
    best = DEFAULT_PATH  # what extract_configured runs by default (auto path, 2 readers)
    met = ratios[best] >= TARGET_RATIO and results[best]["peak_rss_mb"] < TARGET_RSS_MB
    print(f"total {time.perf_counter() - started_at:.0f}s", file=sys.stderr)
    print(json.dumps({
        "name": "extract", "date": dt.date.today().isoformat(), "rows": a.rows,
        "repeats": a.repeats, "chunk_rows": a.chunk_rows, "source": "PostgreSQL 15 hot standby",
        "results": results, "ratios": ratios, "baseline": "copy",
        "target": (f"hisx extraction (default path: {best}) >= {TARGET_RATIO:.0%} of COPY TO STDOUT "
                   f"rows/s, peak RSS < {TARGET_RSS_MB:.0f} MB"),
        "met": met, "machine": f"{os.cpu_count()} cores (shared)",
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
