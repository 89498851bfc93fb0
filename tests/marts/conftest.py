"""A small simulated world (3 centers, 1 month) standardized and loaded into the marts, on
DuckDB and on a fresh PostgreSQL database; plus the independent pandas expectations."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, datetime

import pytest
import sqlalchemy as sa

from hisx.connectors.warehouse import Warehouse
from hisx.pipelines import flow

LOCAL_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def source_url(tmp_path_factory) -> str:
    from hisx.simulator import simulate

    url = f"sqlite:///{tmp_path_factory.mktemp('marts_src') / 'his.sqlite'}"
    simulate(url, centers=3, months=1, visits_per_month=1500, seed=7, start=date(2026, 8, 1),
             progress=False)
    return url


def build(source_url: str, wh: Warehouse) -> None:
    engine = sa.create_engine(source_url)
    try:
        flow.run_all(engine, wh, now=datetime(2027, 1, 1))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    name = f"hisx_m_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(LOCAL_PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield LOCAL_PG.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def duck_world(source_url, tmp_path_factory) -> Iterator[Warehouse]:
    wh = Warehouse.from_url(f"duckdb:///{tmp_path_factory.mktemp('marts_wh') / 'wh.duckdb'}")
    build(source_url, wh)
    yield wh
    wh.close()


@pytest.fixture(scope="session")
def pg_world(source_url, pg_url) -> Iterator[Warehouse]:
    wh = Warehouse.from_url(pg_url)
    build(source_url, wh)
    yield wh
    wh.close()
