"""deploy/dagster.yaml boots an instance on PostgreSQL storage and completes a run."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from hisx.orchestration.definitions import materialize_all
from hisx.simulator import simulate

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.postgres
def test_production_instance_on_postgres_runs_the_ingest_job(tmp_path, monkeypatch,
                                                             pg_database) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("HISX_DAGSTER_PG_URL",
                       pg_database.replace("postgresql+psycopg://", "postgresql+psycopg2://"))
    src = f"sqlite:///{tmp_path / 'his.sqlite'}"
    simulate(src, centers=2, months=1, visits_per_month=300, seed=4, start=date(2026, 8, 1),
             progress=False)
    monkeypatch.setenv("HISX_HOME", str(tmp_path / "hisx"))
    monkeypatch.setenv("HISX_SOURCE_URL", src)
    monkeypatch.setenv("HISX_WAREHOUSE_URL", f"duckdb:///{tmp_path / 'wh.duckdb'}")
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        conc = instance.get_concurrency_config()
        limits = {x["key"]: x["limit"] for x in conc.run_queue_config.tag_concurrency_limits}
        assert limits == {"hisx/source": 2, "hisx/center": 1}
        assert conc.pool_config.default_pool_limit == 4
        result = materialize_all(instance)
        assert result.success
        runs = instance.get_runs()
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS]
        assert len(instance.get_materialized_partitions(
            dg.AssetKey(["marts", "mart_visits_monthly"]))) == 2
