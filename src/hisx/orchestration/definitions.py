"""The Dagster code location: ``dagster dev -m hisx.orchestration.definitions``."""

from __future__ import annotations

import dagster as dg

from hisx.orchestration.assets import all_assets
from hisx.orchestration.resources import HisxResource

#: The main job: every asset, in dependency order (what `make demo` runs).
all_job = dg.define_asset_job("hisx_all", selection=dg.AssetSelection.all())

defs = dg.Definitions(
    assets=all_assets,
    jobs=[all_job],
    resources={"hisx": HisxResource()},
)
