"""The Dagster code location loads and its assets run in-process with passing checks."""

from __future__ import annotations

from datetime import date

import dagster as dg
import pytest

from hisx.orchestration.definitions import defs
from hisx.simulator import simulate


def test_definitions_load_with_every_layer() -> None:
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert "ods/registrations" in keys and "ods/patients" in keys
    assert "std/outpatient_visit" in keys and "std/person" in keys
    assert {"marts/mart_visits_daily", "marts/mart_visits_monthly"} <= keys
    groups = {n.group_name for n in repo.asset_graph.asset_nodes}
    assert {"ods", "std", "marts"} <= groups
    checks = {c.name for c in repo.asset_graph.asset_check_keys}
    assert "conservation" in checks


@pytest.mark.slow
def test_job_runs_in_process_and_checks_pass(tmp_path, monkeypatch) -> None:
    src = f"sqlite:///{tmp_path / 'his.sqlite'}"
    simulate(src, centers=3, months=1, visits_per_month=600, seed=3,
             start=date(2026, 8, 1), progress=False)
    monkeypatch.setenv("HISX_SOURCE_URL", src)
    monkeypatch.setenv("HISX_WAREHOUSE_URL", f"duckdb:///{tmp_path / 'wh.duckdb'}")
    job = defs.resolve_job_def("hisx_all")
    with dg.DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(instance=instance)
        assert result.success
        evals = [e for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
        assert evals and all(e.event_specific_data.passed for e in evals)
        mats = result.asset_materializations_for_node
        assert mats is not None
