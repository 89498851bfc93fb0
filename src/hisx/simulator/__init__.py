"""The synthetic production source: a multi-tenant community cloud-HIS database.

Never imports ``hisx.standards`` or ``hisx.pipelines``: the data is made independently of the
rules that judge it. ``simulate`` builds and fills a source; ``append_activity`` adds later
activity; ``dictionaries`` documents every local code; the ``Manifest`` lists counts and every
injected defect.
"""

from hisx.simulator.core import (
    OfflineWindow,
    add_simulate_arguments,
    append_activity,
    cli_simulate,
    default_manifest_path,
    simulate,
    summary,
)
from hisx.simulator.load import ddl
from hisx.simulator.manifest import DEFECT_KINDS, Manifest

__all__ = [
    "DEFECT_KINDS", "Manifest", "OfflineWindow", "add_simulate_arguments", "append_activity",
    "cli_simulate", "ddl", "default_manifest_path", "simulate", "summary",
]
