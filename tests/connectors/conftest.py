"""The PostgreSQL primary + hot standby rig: taken from the environment (make test) or, when
pytest runs directly, a private rig on free ports started through scripts/rig/pg.sh and
stopped (and removed) at session end; see :mod:`hisx.connectors.source.pgrig`."""

from __future__ import annotations

import pytest

from hisx.connectors.source import pgrig


@pytest.fixture(scope="session")
def pg_rig():
    rig = pgrig.acquire()
    try:
        yield rig
    finally:
        pgrig.release()
