"""Shared fixtures. Service fixtures start what they need; no real-service test is skipped."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

LOCAL_PG = os.environ.get("HISX_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pytest_configure(config: pytest.Config) -> None:
    """A test-only pseudonymization key (never a real secret), for every fixture scope."""
    os.environ.setdefault("HISX_PSEUDO_KEY", "test-only-key-" + "0" * 32)


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL (127.0.0.1:5432), dropped afterwards."""
    import sqlalchemy as sa

    name = f"hisx_t_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(LOCAL_PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = LOCAL_PG.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_warehouse(request) -> Iterator:
    """An empty warehouse of each kind: in-memory DuckDB, a fresh PostgreSQL database."""
    from hisx.connectors.warehouse import Warehouse

    url = "duckdb://" if request.param == "duckdb" else request.getfixturevalue("pg_database")
    wh = Warehouse.from_url(url)
    yield wh
    wh.close()


@pytest.fixture(scope="session")
def pg_rig():
    """The PostgreSQL primary + hot standby rig: from the environment (make test) or, when
    pytest runs directly, a private rig on free ports, stopped and removed at session end
    (:mod:`hisx.connectors.source.pgrig`)."""
    from hisx.connectors.source import pgrig

    rig = pgrig.acquire()
    try:
        yield rig
    finally:
        pgrig.release()
