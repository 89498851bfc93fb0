"""`hisx backfill --center C`: re-read one center from row version 0 through the ingest job.
It restores rows the warehouse lost (which a normal run, following the cursor, never
re-reads), leaves std and marts exactly as before when nothing was lost, enqueues no feed
message twice, removes std rows gone from the source, and a second backfill changes nothing."""

from __future__ import annotations

import sqlite3
from datetime import date

import dagster as dg
import pytest

from hisx.cli import main
from hisx.connectors.warehouse import Warehouse
from hisx.marts.runner import MARTS
from hisx.orchestration.backfill import backfill_center
from hisx.orchestration.definitions import materialize_all
from hisx.pipelines import ods
from hisx.pipelines.standardize import DATASETS
from hisx.simulator import simulate


def _state(wh_url: str, center: str) -> dict:
    """Row count + order-independent hash per std / mart table (the load-history mart
    mart_dq_load_daily excluded: a backfill is one more load), ODS and feed ledger sizes."""
    out = {}
    with Warehouse.from_url(wh_url) as wh:
        for t in [*(m for m in MARTS if m != "mart_dq_load_daily"),
                  *(f"std_{d}" for d in DATASETS)]:
            cols = [c for c in wh.query_df(f"SELECT * FROM {t} WHERE 1 = 0").columns
                    if c not in ("load_id", "standardized_at", "loaded_at")]
            expr = " || '|' || ".join(f'coalesce(CAST("{c}" AS VARCHAR), \'~\')' for c in cols)
            out[t] = wh.query_df(f"SELECT count(*) AS n, sum(hash({expr})) AS h FROM {t}"
                                 ).iloc[0].tolist()
        out["ods_registrations"] = wh.scalar(
            "SELECT count(*) FROM ods_registrations WHERE org_code = :c", {"c": center})
        out["feed_ledger"] = wh.scalar("SELECT count(*) FROM feed_ledger")
    return out


@pytest.mark.slow
def test_backfill_center_rereads_from_zero_idempotently(tmp_path, monkeypatch, capsys) -> None:
    src = tmp_path / "his.sqlite"
    simulate(f"sqlite:///{src}", centers=2, months=1, visits_per_month=400, seed=7,
             start=date(2026, 8, 1), progress=False)
    wh_url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    monkeypatch.setenv("HISX_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HISX_SOURCE_URL", f"sqlite:///{src}")
    monkeypatch.setenv("HISX_WAREHOUSE_URL", wh_url)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    with dg.DagsterInstance.ephemeral() as instance:
        assert materialize_all(instance).success
    with Warehouse.from_url(wh_url) as wh:
        center, _other = sorted(wh.query_df("SELECT org_code FROM ods_organizations")["org_code"])
        before = _state(wh_url, center)
        # the warehouse loses 5 of the center's visits (ODS and std); its cursor stays, so
        # the next normal run would not read them again
        keys = [int(k) for k in wh.query_df(
            "SELECT source_key FROM std_outpatient_visit WHERE tenant = :c ORDER BY source_key "
            "LIMIT 5", {"c": center})["source_key"]]
        ks = ", ".join(map(str, keys))
        wh.execute(f"DELETE FROM ods_registrations WHERE reg_id IN ({ks})")
        wh.execute(f"DELETE FROM std_outpatient_visit WHERE source_key IN ({ks})")
        assert ods.get_cursor(wh, "his", "registrations", center) > max(keys)
    assert _state(wh_url, center)["ods_registrations"] == before["ods_registrations"] - 5

    assert main(["backfill", "--center", center]) == 0
    assert "succeeded" in capsys.readouterr().out
    assert _state(wh_url, center) == before  # restored, and nothing enqueued twice
    with dg.DagsterInstance.get() as instance:  # recorded as the center's partition run
        runs = instance.get_runs(dg.RunsFilter(tags={"hisx/backfill": "from-0"}))
        assert [r.tags["dagster/partition"] for r in runs] == [center]
        assert runs[0].is_success

    # a visit deleted at the source: the backfill leaves it out of std and the marts
    with Warehouse.from_url(wh_url) as wh:
        (gone,) = wh.query_df("SELECT source_key FROM std_outpatient_visit WHERE tenant = :c AND "
                              "status_code = '1' AND NOT is_deleted ORDER BY source_key DESC "
                              "LIMIT 1", {"c": center})["source_key"]
        daily = wh.scalar("SELECT sum(visits) FROM mart_visits_daily WHERE tenant = :c",
                          {"c": center})
    with sqlite3.connect(src) as c:
        c.execute("DELETE FROM registrations WHERE reg_id = ?", (int(gone),))
    with dg.DagsterInstance.ephemeral() as instance:
        r = backfill_center(instance, center)
        assert r.success and [(x.tenant, x.std_rows) for x in r.pruned] == [(center, 1)]
    with Warehouse.from_url(wh_url) as wh:
        assert wh.scalar("SELECT count(*) FROM std_outpatient_visit WHERE source_key = :k",
                         {"k": int(gone)}) == 0
        assert wh.scalar("SELECT sum(visits) FROM mart_visits_daily WHERE tenant = :c",
                         {"c": center}) == daily - 1
        assert wh.scalar("SELECT sum(std_rows) FROM delete_log WHERE tenant = :c",
                         {"c": center}) == 1
    after = _state(wh_url, center)
    with dg.DagsterInstance.ephemeral() as instance:  # idempotent: the same warehouse
        r = backfill_center(instance, center)
        assert r.success and r.pruned == []
    assert _state(wh_url, center) == after
    assert main(["backfill", "--center", "no-such-center"]) == 2  # a clear error
    assert "no configured source serves center" in capsys.readouterr().err
