"""Per-partition asset checks: one evaluation per center, recorded against its partition.

Dagster 1.13 supports partitioned asset checks as a *preview*: an ``AssetCheckSpec`` with the
asset's ``partitions_def`` gets one execution row per partition (the UI shows the check's
status per partition). ``AssetCheckResult`` only fills the partition when the step has a
single partition key, so in a single-run backfill over many centers it would record one
unpartitioned result. The assets therefore yield an ``AssetCheckEvaluation`` per center with
``partition=center`` (what ``AssetCheckResult`` turns into), plus the check's output once.
A failing blocking evaluation fails the step, as a failing ``AssetCheckResult`` does.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping

import dagster as dg

from hisx.orchestration.partitions import CENTER

# The preview warning would be printed at every code-location load and run; the README says
# that partitioned checks are a preview feature of Dagster 1.13.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec")


def spec(name: str, key: dg.AssetKey, description: str, *,
         blocking: bool = False) -> dg.AssetCheckSpec:
    """A check evaluated per ``center`` partition."""
    return dg.AssetCheckSpec(name, asset=key, description=description, blocking=blocking,
                             partitions_def=CENTER)


def per_center(context: dg.AssetExecutionContext, key: dg.AssetKey, name: str,
               outcomes: Mapping[str, tuple[bool, dict]], *,
               severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
               ) -> Iterator[dg.AssetCheckEvaluation | dg.Output]:
    """One evaluation per center of ``outcomes`` (``{center: (passed, metadata)}``), then the
    check's (Nothing) output so the step counts the check as executed."""
    check_key = dg.AssetCheckKey(key, name)
    blocking = context.assets_def.get_spec_for_check_key(check_key).blocking
    for center, (passed, metadata) in sorted(outcomes.items()):
        yield dg.AssetCheckEvaluation(
            asset_key=key, check_name=name, passed=bool(passed), partition=center,
            metadata={"center": center, **metadata}, severity=severity, blocking=blocking)
    yield dg.Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(
        check_key))
