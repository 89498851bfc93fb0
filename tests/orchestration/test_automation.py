"""Automation as an operator sees it: the source sensor's cursor, and convergence after an
offline center's backlog arrives through the sensor-launched runs.

THE key test: the same seeded world, once with a center offline for 24 h (its rows arrive
after the window, with later row versions but identical business rows) and once without.
The offline world is run in two phases by the sensor — first on the source as it stood
before the backlog arrived, then on the full source, so late rows land on business days
already materialized — and must end with the marts, the feed ledger (payloads; no duplicate
message) and the reconciliation of the world where the center never went offline.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from datetime import date, datetime, timedelta

import dagster as dg
import pandas as pd
import pytest

from hisx.connectors.warehouse import Warehouse
from hisx.marts.runner import MARTS
from hisx.orchestration.definitions import defs, ingest_job_def
from hisx.pipelines import feed_render, reconcile
from hisx.simulator import OfflineWindow, append_activity, simulate
from hisx.simulator.schema import TABLES

SIM = dict(centers=3, months=1, visits_per_month=900, seed=11, start=date(2026, 8, 1),
           progress=False)
OFFLINE_START = datetime(2026, 8, 12, 12, 0)  # mid-day: the day is half in
#: Columns that record *when/how* rows were loaded, not what they say.
VOLATILE = {"load_id", "_load_id", "loaded_at", "_loaded_at", "row_version", "refreshed_at",
            "updated_at", "logged_at", "quarantined_at", "built_at", "enqueued_at", "sent_at",
            "acked_at", "seq", "kafka_offset", "kafka_partition", "message_id", "attempts"}
#: Timeliness measures and the std rows' source arrival they come from: *meant* to show the
#: backlog (arrival delay), not business content.
ARRIVAL = {"late_rows", "avg_delay_hours", "max_delay_hours", "timeliness", "source_updated_at"}
#: Marts keyed by load day (how the data was loaded) rather than by business content.
BY_LOAD = {"mart_dq_load_daily"}


def _env(monkeypatch, home, src: str) -> None:
    monkeypatch.setenv("HISX_HOME", str(home))
    monkeypatch.setenv("HISX_SOURCE_URL", src)
    monkeypatch.setenv("HISX_WAREHOUSE_URL", f"duckdb:///{home / 'wh.duckdb'}")
    monkeypatch.delenv("HISX_FEED_BOOTSTRAP", raising=False)
    monkeypatch.delenv("HISX_SOURCES", raising=False)


def tick(instance: dg.DagsterInstance, cursor: str | None):
    """One evaluation of the `source_his` sensor with the instance and a cursor."""
    sensor = defs.get_sensor_def("source_his")
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor,
                                  repository_def=defs.get_repository_def())
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        return sensor.evaluate_tick(ctx)


def run_requests(instance: dg.DagsterInstance, data) -> list[dg.ExecuteInProcessResult]:
    """Execute the sensor's run requests in-process, as the daemon would launch them."""
    out = []
    for req in data.run_requests:
        res = ingest_job_def().execute_in_process(
            instance=instance, partition_key=req.partition_key,
            tags={**req.tags, "dagster/run_key": req.run_key})
        assert res.success
        out.append(res)
    return out


def truncate(src_path, dst_path, upto: datetime) -> None:
    """The source as it stood at ``upto``: only rows that had arrived (updated_at <= upto)."""
    shutil.copy(src_path, dst_path)
    with sqlite3.connect(dst_path) as c:
        for t in TABLES:
            c.execute(f"DELETE FROM {t.name} WHERE updated_at > ?", (upto.isoformat(" "),))


def digest(wh: Warehouse, table: str) -> tuple[int, str]:
    df = wh.query_df(f"SELECT * FROM {table}")
    df = df[[c for c in df.columns if c not in VOLATILE | ARRIVAL]]
    df = df.astype(str).sort_values(list(df.columns)).reset_index(drop=True)
    return len(df), hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()


def ledger(wh: Warehouse) -> tuple[pd.DataFrame, list[str]]:
    df = feed_render.messages(wh).select(
        ["message_id", "dataset", "tenant", "source_key", "envelope", "state"]).to_pandas()
    ids = list(df["message_id"])

    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in VOLATILE}
        return x

    def body(e: str) -> str:
        return json.dumps(strip(json.loads(e)), sort_keys=True)

    df = df.assign(body=df["envelope"].map(body)).drop(columns=["message_id", "envelope"])
    return df.sort_values(["dataset", "tenant", "source_key"]).reset_index(drop=True), ids


def test_sensor_launches_nothing_unchanged_and_exactly_the_changed_centers(tmp_path,
                                                                          monkeypatch) -> None:
    url = f"sqlite:///{tmp_path / 'his.sqlite'}"
    simulate(url, **{**SIM, "visits_per_month": 600})
    _env(monkeypatch, tmp_path / "home", url)
    with dg.DagsterInstance.ephemeral() as instance:
        first = tick(instance, None)
        centers = sorted(r.partition_key for r in first.run_requests)
        assert len(centers) == 3 and instance.get_dynamic_partitions("center") == centers
        assert len({r.run_key for r in first.run_requests}) == 3
        again = tick(instance, first.cursor)  # nothing changed: nothing launched
        assert again.run_requests == [] and again.cursor == first.cursor
        # a tick re-evaluated from the same cursor yields the same run keys (deduplicated)
        assert ({r.run_key for r in tick(instance, None).run_requests}
                == {r.run_key for r in first.run_requests})
        # new activity for the first center only (append_activity fills the first N)
        append_activity(url, start=datetime(2026, 9, 1, 8), hours=3, seed=5, centers=1,
                        visits_per_month=600)
        changed = tick(instance, first.cursor)
        assert [r.partition_key for r in changed.run_requests] == [centers[0]]
        req = changed.run_requests[0]
        upto = json.loads(req.tags["hisx/upto"])
        assert upto["registrations"] > json.loads(first.cursor)["registrations"][centers[0]]
        assert tick(instance, changed.cursor).run_requests == []


@pytest.mark.slow
def test_offline_center_converges_to_the_never_offline_world(tmp_path, monkeypatch) -> None:
    import time

    t0 = time.perf_counter()
    a_path, b_path = tmp_path / "offline.sqlite", tmp_path / "online.sqlite"
    probe = simulate(f"sqlite:///{b_path}", **SIM)
    center = sorted(probe.counts["registrations"])[0]
    window = OfflineWindow(center, OFFLINE_START, 24)
    simulate(f"sqlite:///{a_path}", **SIM, offline=[window])
    before = window.end - timedelta(hours=6)  # the backlog has not arrived yet
    truncate(a_path, tmp_path / "offline_t1.sqlite", before)

    # world A, phase 1: the sensor on the source as it stood before the backlog arrived
    home_a = tmp_path / "a"
    _env(monkeypatch, home_a, f"sqlite:///{tmp_path / 'offline_t1.sqlite'}")
    with dg.DagsterInstance.ephemeral() as inst_a:
        p1 = tick(inst_a, None)
        run_requests(inst_a, p1)
        with Warehouse.from_url(f"duckdb:///{home_a / 'wh.duckdb'}") as wh:
            day = OFFLINE_START.date()
            pre = wh.scalar("SELECT count(*) FROM mart_visits_daily WHERE tenant = :t AND "
                            "period_start = :d", {"t": center, "d": day})
        assert pre, "the offline day was already materialized before the backlog arrived"
        # phase 2: the backlog arrives (the full source); same sensor, its cursor
        _env(monkeypatch, home_a, f"sqlite:///{a_path}")
        p2 = tick(inst_a, p1.cursor)
        assert center in {r.partition_key for r in p2.run_requests}
        runs = run_requests(inst_a, p2)
        mine = next(r for r in runs if r.dagster_run.tags["hisx/center"] == center)
        mat = mine.asset_materializations_for_node("marts_assets")[0]
        reloaded = mat.metadata["reloaded_ranges"].value[center]
        assert any(lo <= str(day) <= hi for lo, hi in (r.split("..") for r in reloaded))
        assert tick(inst_a, p2.cursor).run_requests == []  # converged: nothing left to do

    # world B: the center never went offline, one run over everything
    home_b = tmp_path / "b"
    _env(monkeypatch, home_b, f"sqlite:///{b_path}")
    with dg.DagsterInstance.ephemeral() as inst_b:
        data = tick(inst_b, None)
        run_requests(inst_b, data)

    import sqlalchemy as sa

    with (Warehouse.from_url(f"duckdb:///{home_a / 'wh.duckdb'}") as wa,
          Warehouse.from_url(f"duckdb:///{home_b / 'wh.duckdb'}") as wb):
        for m in MARTS:
            if m not in BY_LOAD:
                assert digest(wa, m) == digest(wb, m), m
        late = "SELECT sum(late_rows) FROM mart_dq_daily WHERE tenant = :t"
        assert wa.scalar(late, {"t": center}) > wb.scalar(late, {"t": center}), \
            "the timeliness measures show the backlog (and only they differ)"
        for d in ("std_outpatient_visit", "std_charge", "std_prescription_item"):
            assert digest(wa, d) == digest(wb, d), d
        la, ids_a = ledger(wa)
        lb, ids_b = ledger(wb)
        assert len(ids_a) == len(set(ids_a)), "a feed message was enqueued twice"
        assert la.equals(lb)
        assert set(la["state"]) == {"acked"}
        outbox = [json.loads(x)["message_id"] for f in (home_a / "outbox").glob("*.jsonl")
                  for x in f.read_text().splitlines()]
        assert len(outbox) == len(set(outbox)) == len(ids_a), "duplicated feed message"
        for home, wh in ((home_a, wa), (home_b, wb)):
            src = a_path if home is home_a else b_path
            engine = sa.create_engine(f"sqlite:///{src}")
            tenants = sorted(probe.counts["registrations"])
            assert reconcile.reconcile(engine, wh, "his", tenants, log=False) == []
            engine.dispose()
    print(f"convergence test body {time.perf_counter() - t0:.1f} s")
