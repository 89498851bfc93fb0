"""Standardizing a center's backlog in key-ordered chunks (HISX_STD_CHUNK_ROWS) gives exactly
what one batch gives: std rows, quarantine, feed ledger and marts, with conservation per
tenant — so memory is bounded by the chunk, not by the backlog."""

from __future__ import annotations

import hashlib
from datetime import date, datetime

import pytest
import sqlalchemy as sa

from hisx.connectors.warehouse import Warehouse
from hisx.marts import runner
from hisx.pipelines import flow
from hisx.standards.datasets import DATASETS

# times of the run, and mart_dq_load_daily's count of batches (more chunks, more batches)
VOLATILE = {"quarantined_at", "enqueued_at", "logged_at", "seq", "_loaded_at", "_load_id",
            "batches"}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> str:
    from hisx.simulator import simulate

    url = f"sqlite:///{tmp_path_factory.mktemp('chunks') / 'his.sqlite'}"
    simulate(url, centers=2, months=1, visits_per_month=900, seed=11, start=date(2026, 8, 1),
             progress=False)
    return url


def build(url: str, path, chunk: int, monkeypatch) -> dict[str, str]:
    monkeypatch.setenv("HISX_STD_CHUNK_ROWS", str(chunk))
    engine = sa.create_engine(url)
    out = {}
    with Warehouse.from_url(f"duckdb:///{path}") as wh:
        flow.ensure_warehouse(wh)
        tenants = flow.discover_tenants(engine)
        flow.extract(engine, wh, source="his", tenants=tenants)
        stats = [s for d in DATASETS for s in flow.standardize_tenants(
            wh, d, tenants, now=datetime(2027, 1, 1), load_id="L-std")]
        assert all(s.conserved for s in stats)
        flow.build_marts(wh)
        out["pending"] = str(sum(len(flow.runlog.pending_loads(wh, d, s.source_table, t.org_code))
                                 for d, s in DATASETS.items() for t in tenants))
        tables = [f"std_{d}" for d in DATASETS] + ["quarantine", "feed_ledger",
                                                    "person_key_cache", *runner.MARTS]
        for t in tables:
            df = wh.query_df(f"SELECT * FROM {t}")
            df = df[[c for c in df.columns if c not in VOLATILE]]
            df = df.sort_values(list(df.columns), kind="mergesort").reset_index(drop=True)
            out[t] = hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()
        out["rows_in"] = str(sum(s.rows_in for s in stats))
    engine.dispose()
    return out


def test_chunked_equals_one_batch(source, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HISX_PSEUDO_KEY", "test-key-aaaaaaaaaaaaaaaaaaaaaaaa")
    whole = build(source, tmp_path / "whole.duckdb", 10**9, monkeypatch)
    chunked = build(source, tmp_path / "chunked.duckdb", 97, monkeypatch)
    assert int(whole["rows_in"]) > 20 * 97  # many chunks per center and dataset
    assert whole["pending"] == chunked["pending"] == "0"
    assert chunked == whole


def test_chunk_size_must_be_positive(monkeypatch) -> None:
    monkeypatch.setenv("HISX_STD_CHUNK_ROWS", "0")
    with pytest.raises(ValueError, match="HISX_STD_CHUNK_ROWS"):
        flow.std_chunk_rows()
