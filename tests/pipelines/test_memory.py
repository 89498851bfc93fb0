"""The allocator hisx gives Arrow, and the release of freed memory between phases."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from hisx.connectors.warehouse import Warehouse
from hisx.pipelines import flow, memory


def _rss_mb() -> int:
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS")) // 1024


@pytest.fixture
def restore_pool(monkeypatch):
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    monkeypatch.delenv("HISX_ARROW_POOL", raising=False)
    before = pa.default_memory_pool()
    yield
    pa.set_memory_pool(before)


def test_jemalloc_is_the_default_pool(restore_pool):
    pa.set_memory_pool(pa.mimalloc_memory_pool())
    assert memory.use_lean_pool() == "jemalloc"
    assert pa.default_memory_pool().backend_name == "jemalloc"


def test_pool_is_configurable_and_checked(restore_pool, monkeypatch):
    monkeypatch.setenv("HISX_ARROW_POOL", "mimalloc")
    assert memory.use_lean_pool() == "mimalloc"
    monkeypatch.setenv("HISX_ARROW_POOL", "tcmalloc")
    with pytest.raises(ValueError, match="HISX_ARROW_POOL must be one of"):
        memory.use_lean_pool()


def test_arrows_own_setting_wins(restore_pool, monkeypatch):
    pa.set_memory_pool(pa.system_memory_pool())
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "system")
    assert memory.use_lean_pool() == "system"


def test_release_gives_freed_arrow_memory_back(restore_pool):
    """mimalloc keeps what Arrow frees; release_memory hands it back to the OS."""
    pa.set_memory_pool(pa.mimalloc_memory_pool())
    base = pa.array(np.arange(2_000_000, dtype=np.int64))
    arrays = [pc.add(base, i) for i in range(16)]  # 16 x 16 MB through the pool
    held = _rss_mb()
    del arrays
    assert _rss_mb() > held - 100, "mimalloc gave the memory back by itself"
    memory.release_memory()
    assert _rss_mb() < held - 150


def test_phases_use_the_pool_and_release(restore_pool, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(memory, "release_memory", lambda: calls.append("release"))
    pa.set_memory_pool(pa.mimalloc_memory_pool())
    with Warehouse.from_url(f"duckdb:///{tmp_path / 'wh.duckdb'}") as wh:
        flow.ensure_warehouse(wh)
        flow.standardize_tenants(wh, "person", [flow.Tenant("C1", "vendor_a")])
        assert pa.default_memory_pool().backend_name == "jemalloc"
        assert calls == ["release"]
        flow.build_marts(wh)
        assert calls == ["release", "release"]
