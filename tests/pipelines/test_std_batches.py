"""How a transaction group's chunks are cut into standardization batches."""

from __future__ import annotations

import pytest

from hisx.pipelines import flow
from hisx.pipelines.std_batches import plan_batches
from hisx.pipelines.std_stats import Tenant


def unit(center: str, vendor: str, rows: int, lo: int = 0):
    return (Tenant(center, vendor), ["L1"], (lo, lo + rows - 1), rows, ["L1"])


def test_batches_hold_centers_sharing_maps_up_to_the_row_cap() -> None:
    group = [unit("A1", "vendor_a", 40), unit("B1", "vendor_b", 10), unit("A2", "vendor_a", 30),
             unit("A3", "vendor_a", 50), unit("A4", "vendor_a", 5), unit("B2", "vendor_b", 90)]
    plan = plan_batches(group, 80)
    names = [[u[0].org_code for u in b] for b in plan]
    assert names == [["A1", "A2"], ["A3", "A4"], ["B1"], ["B2"]]
    assert all(sum(u[3] for u in b) <= 80 or len(b) == 1 for b in plan)
    assert sorted(u[0].org_code for b in plan for u in b) == sorted(u[0].org_code for u in group)


def test_a_chunk_above_the_cap_is_a_batch_alone_and_order_is_kept() -> None:
    group = [unit("A1", "vendor_a", 10, 0), unit("A1", "vendor_a", 500, 10),
             unit("A1", "vendor_a", 10, 510)]
    plan = plan_batches(group, 100)
    assert [[u[2][0] for u in b] for b in plan] == [[0], [10], [510]]


def test_batch_rows_must_be_positive(monkeypatch) -> None:
    monkeypatch.setenv("HISX_STD_BATCH_ROWS", "-5")
    with pytest.raises(ValueError, match="HISX_STD_BATCH_ROWS"):
        flow.std_batch_rows()
