"""DuckDB marts load by difference: the same rows as delete-then-insert, and the rows that did
not change stay where they are (a week-old cancellation no longer rewrites the week)."""

from __future__ import annotations

import hashlib
import shutil
from datetime import date

import pytest

from hisx.connectors.warehouse import Warehouse
from hisx.marts import runner

from .conftest import build

DAY = date(2026, 8, 12)


def _digests(wh: Warehouse) -> dict[str, str]:
    out = {}
    for m in runner.MARTS:
        df = wh.query_df(f"SELECT * FROM {m}")
        df = df.sort_values(list(df.columns), kind="mergesort").reset_index(drop=True)
        out[m] = hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()
    return out


@pytest.fixture(scope="module")
def world(source_url, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("merge") / "wh.duckdb"
    with Warehouse.from_url(f"duckdb:///{path}") as wh:
        build(source_url, wh)
    return str(path)


def _cancel_one(wh: Warehouse) -> tuple[str, int]:
    """Cancel one visit of DAY in std (what a late 退号 does) and return (tenant, key)."""
    t, k = wh.query_df("SELECT tenant, source_key FROM std_outpatient_visit WHERE "
                       "business_date = :d AND status_code = '1' ORDER BY tenant, source_key "
                       "LIMIT 1", {"d": DAY}).iloc[0]
    wh.execute("UPDATE std_outpatient_visit SET status_code = '2' WHERE tenant = :t AND "
               "source_key = :k", {"t": t, "k": int(k)})
    return str(t), int(k)


def _reload(path: str, merge: str, monkeypatch) -> tuple[dict[str, str], Warehouse]:
    monkeypatch.setenv("HISX_MART_MERGE", merge)
    wh = Warehouse.from_url(f"duckdb:///{path}")
    tenant, _ = _cancel_one(wh)
    runner.load_mart_many(wh, "fact_visit", [tenant], DAY, DAY)
    for name in runner.MARTS:
        runner.load_mart_many(wh, name, sorted({tenant, "unknown-center"}), DAY, DAY)
    return _digests(wh), wh


def test_same_rows_as_delete_then_insert(world, tmp_path, monkeypatch) -> None:
    a, b = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    shutil.copy(world, a)
    shutil.copy(world, b)
    merged, wh = _reload(str(a), "1", monkeypatch)
    wh.close()
    plain, wh = _reload(str(b), "0", monkeypatch)
    wh.close()
    assert merged == plain
    with Warehouse.from_url(f"duckdb:///{world}") as wh:
        assert _digests(wh)["fact_visit"] != merged["fact_visit"]  # the cancellation shows


def test_unchanged_rows_are_not_rewritten(world, tmp_path, monkeypatch) -> None:
    path = tmp_path / "c.duckdb"
    shutil.copy(world, path)
    monkeypatch.setenv("HISX_MART_MERGE", "1")
    with Warehouse.from_url(f"duckdb:///{path}") as wh:
        tenant, key = _cancel_one(wh)
        before = wh.query_df("SELECT rowid AS r, source_key FROM fact_visit WHERE tenant = :t "
                             "AND period_start = :d", {"t": tenant, "d": DAY})
        runner.load_mart(wh, "fact_visit", tenant, DAY, DAY)
        after = wh.query_df("SELECT rowid AS r, source_key, is_valid FROM fact_visit WHERE "
                            "tenant = :t AND period_start = :d", {"t": tenant, "d": DAY})
    assert len(before) == len(after) > 1
    moved = set(after["r"]) - set(before["r"])
    assert len(moved) == 1  # only the cancelled visit's row was replaced
    row = after[after["r"].isin(moved)].iloc[0]
    assert int(row["source_key"]) == key and not row["is_valid"]
