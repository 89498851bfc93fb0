"""Backfill a center: re-read it from the source's first row version, through Dagster.

``hisx backfill --center C`` (or :func:`backfill_center`): reset the center's ODS rows and
cursors (:mod:`hisx.pipelines.backfill`), run the ``ingest`` job for its partition (recorded
on the instance like any run: the UI shows it with its checks), then remove std / quarantine
rows whose source row is gone (hard deletes) and re-load their mart days. Idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg

from hisx.marts.runner import MARTS
from hisx.orchestration.assets import SOURCE_TAG
from hisx.orchestration.definitions import ensure_centers, ingest_job_def
from hisx.orchestration.resources import HisxResource
from hisx.orchestration.sensors import run_tags
from hisx.orchestration.sources import configured_sources
from hisx.pipelines import backfill, deletes, flow


@dataclass
class BackfillResult:
    center: str
    source: str
    success: bool
    run_id: str
    reset: backfill.Reset
    pruned: list[deletes.Removed] = field(default_factory=list)
    marts: dict = field(default_factory=dict)


def _source_of(center: str, source: str | None) -> str:
    srcs = configured_sources()
    if source is not None:
        if source not in {s.name for s in srcs}:
            raise ValueError(f"unknown source {source!r}")
        return source
    for s in srcs:  # the one whose configuration (or organizations table) serves the center
        if s.cfg is not None and s.cfg.tenants:
            if center in {t.org_code for t in s.cfg.tenants}:
                return s.name
            continue
        with s.reader() as (reader, _):
            if center in {t.org_code for t in s.tenants(reader)}:
                return s.name
    raise ValueError(f"no configured source serves center {center!r}")


def backfill_center(instance: dg.DagsterInstance, center: str,
                    source: str | None = None) -> BackfillResult:
    """Re-read ``center`` from row version 0 and rebuild its std, marts and feed messages."""
    name = _source_of(center, source)
    hisx = HisxResource()
    with hisx.warehouse() as wh:
        reset = backfill.reset_center(wh, name, center)
    ensure_centers(instance, [center])
    res = ingest_job_def().execute_in_process(
        instance=instance, partition_key=center, raise_on_error=False,
        tags={**run_tags(name, center), SOURCE_TAG: name, "hisx/backfill": "from-0"})
    out = BackfillResult(center, name, res.success, res.run_id, reset)
    if not res.success:
        return out
    with hisx.warehouse() as wh:
        out.pruned = deletes.prune_orphans(wh, name, center)
        if out.pruned:
            out.marts = flow.build_marts(wh, tenants=[center])
    for m in MARTS if out.marts else []:
        instance.report_runless_asset_event(dg.AssetMaterialization(
            ["marts", m], partition=center,
            metadata={"reloaded_ranges": [f"{a}..{b}" for a, b in out.marts.get(center, [])],
                      "reason": "backfill: rows gone from the source"}))
    return out
