"""A small simulated source shared by the simulator tests (session scope: generated once)."""

from __future__ import annotations

import pytest
from simhelpers import SMALL

from hisx.simulator import simulate


@pytest.fixture(scope="session")
def small_source(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "source.db"
    manifest = simulate(f"sqlite:///{path}", seed=7, **SMALL)
    return path, manifest
