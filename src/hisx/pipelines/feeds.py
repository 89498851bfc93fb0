"""Feed outbox (ledger) for the push feeds to the regional platform.

Placeholder interface owned by the feeds work: ``enqueue`` is called inside the
standardization transaction with the rows just standardized.
"""

from __future__ import annotations

import pandas as pd

from hisx.connectors.warehouse import Warehouse


def enqueue(wh: Warehouse, dataset: str, tenant: str, standardized: pd.DataFrame,
            load_id: str) -> int:
    """Write pending ledger entries for ``standardized`` rows; returns how many are new."""
    return 0
