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
from hisx.pipelines import flow


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
        flow.run_all(engine, wh, now=datetime(2027, 1, 1))
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


def wh_query(api: Api, sql: str, params: list | None = None) -> list[tuple]:
    """An independent read of the test warehouse (read-only, like the API)."""
    import duckdb

    with duckdb.connect(str(api.warehouse), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def contracted_person(api: Api, tenant: str, not_at: str | None = None) -> str:
    """A person with an active family-doctor contract at ``tenant`` today (and none at
    ``not_at``)."""
    rows = wh_query(api, """
        SELECT person_key FROM std_family_contract
        WHERE tenant = ? AND status_code = '1' AND start_date <= current_date
          AND end_date >= current_date
          AND person_key NOT IN (SELECT person_key FROM std_family_contract WHERE tenant = ?)
          AND person_key IN (SELECT person_key FROM std_outpatient_visit)
        ORDER BY person_key LIMIT 1""", [tenant, not_at or ""])
    assert rows, f"no contracted person at {tenant}"
    return rows[0][0]


def soap_envelope(op: str, fields: str) -> str:
    return ('<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/'
            f'envelope/" xmlns:h="urn:hisx:share:v1"><s:Body><h:{op}>{fields}</h:{op}>'
            "</s:Body></s:Envelope>")


@pytest.fixture(scope="session")
def live_url(api) -> Iterator[str]:
    """The same app served by uvicorn on a free loopback port (for zeep and wrk-like use)."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(api.client.app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    t.join(5)
