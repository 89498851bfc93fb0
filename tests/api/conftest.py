"""A small simulated world (3 centers, 1 month) in a DuckDB warehouse, built once per
session, and the share API over it (read-only), with keys for a center, another center and
the region."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from hisx.api.app import create_app
from hisx.api.keys import KeyStore
from hisx.connectors.warehouse import Warehouse
from hisx.marts import runner
from hisx.pipelines import flow
from hisx.standards.datasets import DATASETS


@pytest.fixture(scope="session")
def api_world(tmp_path_factory) -> Path:
    from hisx.simulator import simulate

    tmp = tmp_path_factory.mktemp("api_world")
    url = f"sqlite:///{tmp / 'his.sqlite'}"
    simulate(url, centers=3, months=1, visits_per_month=1500, seed=7, start=date(2026, 8, 1),
             progress=False)
    engine = sa.create_engine(url)
    path = tmp / "wh.duckdb"
    wh = Warehouse.from_url(f"duckdb:///{path}")
    try:
        flow.ensure_warehouse(wh)
        tenants = flow.discover_tenants(engine)
        flow.extract(engine, wh, source="his", tenants=tenants)
        for d in DATASETS:
            for t in tenants:
                flow.standardize_dataset(wh, d, t, now=datetime(2027, 1, 1))
        runner.refresh_dirty(wh)
    finally:
        wh.close()  # the API opens the file read-only; no writer may stay open
        engine.dispose()
    return path


@dataclass
class Api:
    client: TestClient
    store: KeyStore
    centers: list[str]
    region_key: str
    center_key: str      # every scope a center can hold, for centers[0]
    other_key: str       # centers[1]
    warehouse: Path

    @property
    def mine(self) -> str:
        return self.centers[0]

    @property
    def other(self) -> str:
        return self.centers[1]

    def h(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="session")
def api(api_world, tmp_path_factory) -> Iterator[Api]:
    import duckdb

    with duckdb.connect(str(api_world), read_only=True) as con:
        centers = [r[0] for r in con.execute(
            "SELECT DISTINCT tenant FROM std_outpatient_visit ORDER BY 1").fetchall()]
    store = KeyStore(tmp_path_factory.mktemp("api_keys") / "keys.sqlite")
    big = {"rate": 1e6, "burst": 1e6}
    region, _ = store.create("*", ["region:read", "admin"], label="region", **big)
    mine, _ = store.create(centers[0], ["center:read", "person:read", "admin"], **big)
    other, _ = store.create(centers[1], ["center:read", "person:read", "admin"], **big)
    app = create_app(f"duckdb:///{api_world}", store)
    with TestClient(app) as client:
        yield Api(client, store, centers, region, mine, other, api_world)
    store.close()
