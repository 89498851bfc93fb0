"""The Dagster code location: ``dagster dev -m hisx.orchestration.definitions``."""

from __future__ import annotations

import dagster as dg

from hisx.orchestration.assets import all_assets
from hisx.orchestration.partitions import CENTER
from hisx.orchestration.resources import HisxResource
from hisx.orchestration.sensors import (
    dictionary_job,
    ingest_job,
    nightly_reconciliation,
    schedules,
    sensors,
)

defs = dg.Definitions(
    assets=all_assets,
    jobs=[ingest_job, dictionary_job, nightly_reconciliation],
    sensors=sensors(),
    schedules=schedules,
    resources={"hisx": HisxResource()},
)


def ensure_centers(instance: dg.DagsterInstance, centers: list[str]) -> list[str]:
    """Add the centers missing from the ``center`` dynamic partitions; returns all of them."""
    known = set(instance.get_dynamic_partitions(CENTER.name))
    new = [c for c in centers if c not in known]
    if new:
        instance.add_dynamic_partitions(CENTER.name, new)
    return CENTER.get_partition_keys(dynamic_partitions_store=instance)


def range_tags(keys: list[str]) -> dict[str, str]:
    """Run tags for a single-run backfill over the partition key range ``keys[0]..keys[-1]``."""
    return {"dagster/asset_partition_range_start": str(keys[0]),
            "dagster/asset_partition_range_end": str(keys[-1])}


def materialize_all(instance: dg.DagsterInstance,
                    centers: list[str] | None = None) -> dg.ExecuteInProcessResult | None:
    """What `make demo` runs: the ``ingest`` job over every center in one in-process run
    (single-run backfill: each step does all centers in one batch, as fast as unpartitioned).
    Returns None when no center exists."""
    centers = centers if centers is not None else [t.org_code for t in HisxResource().tenants()]
    keys = ensure_centers(instance, centers)
    if not keys:
        return None
    return ingest_job_def().execute_in_process(instance=instance, tags=range_tags(sorted(keys)),
                                               raise_on_error=False)


def ingest_job_def() -> dg.JobDefinition:
    return defs.resolve_job_def("ingest")
