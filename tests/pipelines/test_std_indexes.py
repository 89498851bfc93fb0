"""The lookups each standardization batch makes are index lookups on PostgreSQL.

Every batch replaces its keys' earlier std versions, clears their quarantine rows, reads the
std rows of its days for cross-batch dedup and looks up person keys. On PostgreSQL each of
those was a scan of the whole table, so a dataset's standardization grew with the square of
its rows. DuckDB keeps no indexes (its ART indexes live in memory; zonemaps prune instead).
"""

from __future__ import annotations

from datetime import date, datetime

import pytest
import sqlalchemy as sa

from hisx.connectors.warehouse import Warehouse
from hisx.pipelines import flow
from hisx.simulator import simulate
from hisx.standards.datasets import DATASETS


@pytest.fixture()
def source(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("HISX_PSEUDO_KEY", "test-key-aaaaaaaaaaaaaaaaaaaaaaaa")
    url = f"sqlite:///{tmp_path / 'his.sqlite'}"
    simulate(url, centers=1, months=1, visits_per_month=300, seed=5, start=date(2026, 8, 1),
             progress=False)
    return url


def standardized(url: str, wh: Warehouse) -> None:
    engine = sa.create_engine(url)
    try:
        flow.ensure_warehouse(wh)
        tenants = flow.discover_tenants(engine)
        flow.extract(engine, wh, source="his", tenants=tenants)
        for d in DATASETS:
            flow.standardize_tenants(wh, d, tenants, now=datetime(2027, 1, 1))
    finally:
        engine.dispose()


def plan(wh: Warehouse, sql: str) -> str:
    """The statement's plan with sequential scans priced out: what the indexes can serve."""
    with wh.transaction():
        wh.execute("SET LOCAL enable_seqscan = off")
        return "\n".join(str(r[0]) for r in wh.query_df(f"EXPLAIN {sql}").itertuples(
            index=False))


@pytest.mark.postgres
def test_batch_lookups_are_served_by_indexes_on_postgres(source, pg_database) -> None:
    with Warehouse.from_url(pg_database) as wh:
        standardized(source, wh)
        defs = dict(wh.query_df("SELECT indexname, indexdef FROM pg_indexes WHERE "
                                "schemaname = 'public'").itertuples(index=False))
        assert defs["ix_quarantine_key"].endswith("(dataset, tenant, source_key)")
        assert defs["ix_person_key_cache_pid"].endswith("(tenant, patient_id)")
        t = wh.scalar("SELECT min(tenant) FROM std_charge")
        for d in DATASETS:
            assert defs[f"ix_std_{d}_key"].endswith(f"std_{d} USING btree (tenant, source_key)")
            assert defs[f"ix_std_{d}_day"].endswith(
                f"std_{d} USING btree (tenant, business_date)")
            assert wh.scalar(f"SELECT count(*) FROM std_{d}") > 0, d
            # the batch's statements as the writer words them: no scan of the whole table
            for sql in (f"DELETE FROM std_{d} WHERE tenant IN ('{t}') AND source_key "
                        "BETWEEN 1 AND 50",
                        f"SELECT source_key FROM std_{d} WHERE tenant IN ('{t}') AND "
                        "business_date BETWEEN DATE '2026-08-01' AND DATE '2026-08-03'"):
                assert "Seq Scan" not in plan(wh, sql), sql
        for sql in (f"DELETE FROM quarantine WHERE dataset = 'charge' AND tenant IN ('{t}') "
                    "AND source_key BETWEEN 1 AND 50",
                    f"SELECT person_key FROM person_key_cache WHERE tenant = '{t}' "
                    "AND patient_id = 7"):
            assert "Seq Scan" not in plan(wh, sql), sql


def test_duckdb_warehouse_keeps_no_indexes(source, tmp_path) -> None:
    with Warehouse.from_url(f"duckdb:///{tmp_path / 'wh.duckdb'}") as wh:
        standardized(source, wh)
        assert wh.scalar("SELECT count(*) FROM std_charge") > 0
        assert wh.scalar("SELECT count(*) FROM duckdb_indexes()") == 0
