"""Row versions and keys survive standardization exactly: the simulator's row versions (like
a SQL Server ROWVERSION read as bigint) exceed 2**53, where a float64 round trip rounds."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa

from hisx.connectors.warehouse import Warehouse
from hisx.pipelines import flow
from hisx.simulator import simulate
from hisx.standards.datasets import DATASETS


def test_std_and_quarantine_keep_the_exact_row_version(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HISX_PSEUDO_KEY", "test-key-aaaaaaaaaaaaaaaaaaaaaaaa")
    url = f"sqlite:///{tmp_path / 'his.sqlite'}"
    simulate(url, centers=1, months=1, visits_per_month=600, seed=3, start=date(2026, 8, 1),
             progress=False)
    engine = sa.create_engine(url)
    with Warehouse.from_url(f"duckdb:///{tmp_path / 'wh.duckdb'}") as wh:
        flow.ensure_warehouse(wh)
        tenants = flow.discover_tenants(engine)
        flow.extract(engine, wh, source="his", tenants=tenants)
        for spec in DATASETS.values():  # odd versions: none is a float64 (2**61 steps by 512)
            wh.execute(f"UPDATE ods_{spec.source_table} SET row_version = row_version + 1 "
                       "WHERE row_version % 2 = 0")
        std = [s for d in DATASETS for s in flow.standardize_tenants(
            wh, d, tenants, now=datetime(2027, 1, 1))]
        assert sum(s.standardized for s in std) > 1000
        for name, spec in DATASETS.items():
            ods = f"ods_{spec.source_table}"
            assert wh.scalar(f"SELECT min(row_version) FROM {ods}") > 2**60, name
            assert not wh.scalar(f"SELECT count(*) FROM {ods} WHERE row_version = "
                                 "CAST(CAST(row_version AS DOUBLE) AS BIGINT)"), name
            for table, extra in ((f"std_{name}", ""), ("quarantine", f" AND q.dataset = '{name}'")):
                pairs = wh.scalar(
                    f"SELECT count(*) FROM {table} q JOIN {ods} o ON o.{spec.pk} = q.source_key"
                    f" AND o.org_code = q.tenant WHERE true{extra}")
                exact = wh.scalar(
                    f"SELECT count(*) FROM {table} q JOIN {ods} o ON o.{spec.pk} = q.source_key"
                    f" AND o.org_code = q.tenant WHERE o.row_version = q.row_version{extra}")
                assert exact == pairs, (name, table, exact, pairs)
            # and the feed ledger names the same versions
            assert not wh.scalar(
                f"SELECT count(*) FROM feed_ledger l JOIN {ods} o ON o.{spec.pk} = l.source_key "
                f"AND o.org_code = l.tenant WHERE l.dataset = '{name}' "
                "AND o.row_version <> l.row_version"), name
    engine.dispose()
