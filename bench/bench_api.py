"""Share API latency and throughput with wrk on loopback.

Builds a simulated world (3 centers x 1 month at ``--visits`` visits a month per center) into
a DuckDB warehouse, serves the API with uvicorn (one process) on a free loopback port, and
runs wrk against

* ``mart``: one center, one month of ``mart_visits_daily`` (31 rows, not person-level);
* ``records``: 100 ``outpatient_visit`` records of one center and day (person-level, so each
  request also appends an audit row);

at 1/16/64 connections, ``--seconds`` each, in three server configurations:

* ``per_request``: the default — DuckDB opened read-only per query (the pipeline can write
  between requests) and the response cache on (a mart page is computed once per warehouse
  version; records are person-level, so read and audited on every request);
* ``per_request_nocache``: the baseline — the same with ``HISX_API_CACHE_SECONDS=0``;
* ``shared_nocache``: one read-only connection for the server's life, no cache (the fastest
  uncached read; the pipeline cannot write meanwhile).

The whole matrix runs ``--repeats`` times (configurations interleaved, a fresh server each
time, warmed by one unmeasured second of wrk per target); every cell is the median of the
repeats (``*_runs`` hold each run). Prints JSON:
requests/s, p50 and p99 latency (ms), and the default/baseline ratios.

    .venv/bin/python bench/bench_api.py [--visits 18000] [--seconds 5] [--repeats 3]
Needs wrk (Debian package ``wrk``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import date, datetime
from pathlib import Path

SERVE = ("import sys, uvicorn; from hisx.api.app import create_app; "
         "uvicorn.run(create_app(), host='127.0.0.1', port=int(sys.argv[1]), "
         "log_level='warning', access_log=False)")


def build_world(tmp: Path, visits: int) -> tuple[str, list[str]]:
    import sqlalchemy as sa

    from hisx.connectors.warehouse import Warehouse
    from hisx.pipelines import flow
    from hisx.simulator import simulate

    os.environ.setdefault("HISX_PSEUDO_KEY", "bench-only-key-" + "0" * 32)
    url = f"sqlite:///{tmp / 'his.sqlite'}"
    simulate(url, centers=3, months=1, visits_per_month=visits, seed=7,
             start=date(2026, 8, 1), progress=False)
    engine = sa.create_engine(url)
    wh_url = f"duckdb:///{tmp / 'wh.duckdb'}"
    wh = Warehouse.from_url(wh_url)
    try:
        tenants = flow.run_all(engine, wh, now=datetime(2027, 1, 1)).standardized["person"]
    finally:
        wh.close()
        engine.dispose()
    return wh_url, [t.tenant for t in tenants]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict[str, str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(port)], env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/openapi.json", timeout=1)
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the API server did not start")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(url: str, key: str, conns: int, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", f"-t{min(2, conns)}", f"-c{conns}", f"-d{seconds}s", "--latency",
         "-H", f"Authorization: Bearer {key}", url],
        check=True, capture_output=True, text=True).stdout
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"rps": round(rps, 1), "p50_ms": round(_ms(lat["50"]), 2),
            "p99_ms": round(_ms(lat["99"]), 2), "non_2xx": int(non2xx.group(1)) if non2xx
            else 0}


def _median(runs: list[dict[str, float]]) -> dict[str, float | list[float]]:
    """Median of each figure over the repeats, with every run's rps and p99 kept."""
    out: dict[str, float | list[float]] = {
        k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}
    out["rps_runs"] = [r["rps"] for r in runs]
    out["p99_ms_runs"] = [r["p99_ms"] for r in runs]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--visits", type=int, default=18000)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--conns", default="1,16,64")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install -y wrk")
    from hisx.api.keys import KeyStore

    tmp = Path(tempfile.mkdtemp(prefix="hisx_bench_api_"))
    t0 = time.perf_counter()
    wh_url, centers = build_world(tmp, args.visits)
    build_s = time.perf_counter() - t0
    store = KeyStore(tmp / "keys.sqlite")
    key, _ = store.create(centers[0], ["center:read"], rate=1e9, burst=1e9)
    store.close()
    targets = {
        "mart": "/api/v1/marts/mart_visits_daily?date_from=2026-08-01&date_to=2026-08-31",
        "records": "/api/v1/records/outpatient_visit?date_from=2026-08-05&date_to=2026-08-05"
                   "&limit=100",
    }
    configs = {"per_request": {"HISX_API_DUCKDB_MODE": "per_request"},
               "per_request_nocache": {"HISX_API_DUCKDB_MODE": "per_request",
                                       "HISX_API_CACHE_SECONDS": "0"},
               "shared_nocache": {"HISX_API_DUCKDB_MODE": "shared",
                                  "HISX_API_CACHE_SECONDS": "0"}}
    conns = [int(x) for x in args.conns.split(",")]
    runs: dict[str, dict[str, dict[str, list[dict[str, float]]]]] = {}
    for _ in range(args.repeats):
        for config, extra in configs.items():
            env = {**{k: v for k, v in os.environ.items() if not k.startswith("HISX_API_")},
                   "HISX_WAREHOUSE_URL": wh_url, "HISX_API_DB": str(tmp / "keys.sqlite"),
                   **extra}
            port = free_port()
            proc = start_server(env, port)
            try:
                for path in targets.values():  # warm-up, not measured: first-request costs
                    run_wrk(f"http://127.0.0.1:{port}{path}", key, 4, 1)
                for name, path in targets.items():
                    for c in conns:
                        runs.setdefault(config, {}).setdefault(name, {}).setdefault(
                            str(c), []).append(run_wrk(f"http://127.0.0.1:{port}{path}", key,
                                                       c, args.seconds))
            finally:
                proc.terminate()
                proc.wait(10)
    results = {cfg: {n: {c: _median(rs) for c, rs in v.items()} for n, v in t.items()}
               for cfg, t in runs.items()}

    def ratio(field: str, a: str = "per_request_nocache", b: str = "per_request"
              ) -> dict[str, dict[str, float]]:
        return {n: {c: round(results[a][n][c][field] / max(results[b][n][c][field], 1e-6), 2)
                    for c in results["per_request"][n]} for n in targets}

    print(json.dumps({
        "bench": "api", "date": date.today().isoformat(), "machine": platform.platform(),
        "cpus": os.cpu_count(), "visits_per_center_month": args.visits, "seconds": args.seconds,
        "repeats": args.repeats, "world_build_s": round(build_s, 1), "targets": targets,
        "configs": configs, "results": results,
        "p50_speedup_default_vs_nocache": ratio("p50_ms"),
        "p99_speedup_default_vs_nocache": ratio("p99_ms"),
        "rps_ratio_default_vs_nocache": ratio("rps", "per_request", "per_request_nocache"),
        "target_p99_lt_50ms_at_16_mart_default_mode":
            results["per_request"]["mart"].get("16", {}).get("p99_ms", 1e9) < 50,
    }, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
