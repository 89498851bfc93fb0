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


def test_ods_rows_keep_money_columns_arrow_backed_and_exact(tmp_path) -> None:
    """A batch's ODS rows come back with DECIMAL columns as Arrow decimals (no Decimal object
    per value), whose values are the stored ones."""
    from decimal import Decimal

    import pandas as pd

    from hisx.connectors.warehouse import Warehouse
    from hisx.pipelines import ods
    from hisx.pipelines.std_batches import ods_rows

    with Warehouse.from_url(f"duckdb:///{tmp_path}/w.duckdb") as wh:
        wh.execute(f"CREATE TABLE {ods.ods_name('charges')} (org_code VARCHAR, charge_id BIGINT, "
                   "amount DECIMAL(12, 2), _load_id VARCHAR, _loaded_at TIMESTAMP)")
        wh.execute(f"INSERT INTO {ods.ods_name('charges')} VALUES ('C1', 1, 12.30, 'L1', now()), "
                   "('C1', 2, NULL, 'L1', now()), ('C1', 3, -0.05, 'L2', now())")
        df = ods_rows(wh, "charges", [("C1", ["L1"], (1, 3))]).sort_values("charge_id")
    assert isinstance(df["amount"].dtype, pd.ArrowDtype)
    assert df["amount"].tolist()[0] == Decimal("12.30") and pd.isna(df["amount"].tolist()[1])
    assert list(df["charge_id"]) == [1, 2] and "_load_id" not in df.columns
