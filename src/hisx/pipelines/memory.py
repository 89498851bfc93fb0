"""Process memory between pipeline phases: which allocator Arrow uses, and giving freed memory
back to the operating system.

Measured on the 31-center backfill (bench/changes.md, session 7): with Arrow's default
mimalloc pool and glibc's heap, the memory standardization had freed stayed in the process, so
the marts phase started from ~850 MB and, with DuckDB's 512 MB mart cap, peaked at 1.16 GB.
jemalloc hands freed Arrow buffers back on its own (the person dataset's peak fell ~100 MB),
and releasing what is left before the marts start lowers their peak by ~190 MB.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from functools import cache

import pyarrow as pa

POOLS = ("jemalloc", "mimalloc", "system")


def arrow_pool_name() -> str:
    """The Arrow allocator hisx asks for (``HISX_ARROW_POOL``, default ``jemalloc``)."""
    name = os.environ.get("HISX_ARROW_POOL", "jemalloc").strip().lower()
    if name not in POOLS:
        raise ValueError(f"HISX_ARROW_POOL must be one of {', '.join(POOLS)}, not {name!r}")
    return name


def use_lean_pool() -> str:
    """Make ``HISX_ARROW_POOL`` Arrow's default pool, unless Arrow's own
    ``ARROW_DEFAULT_MEMORY_POOL`` says otherwise; returns the pool in use. A pyarrow built
    without that allocator keeps its default."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return pa.default_memory_pool().backend_name
    name = arrow_pool_name()
    if pa.default_memory_pool().backend_name != name:
        with contextlib.suppress(NotImplementedError):  # not compiled into this pyarrow
            pa.set_memory_pool(getattr(pa, f"{name}_memory_pool")())
    return pa.default_memory_pool().backend_name


@cache
def _libc() -> ctypes.CDLL | None:
    path = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(path) if path else None
    except OSError:
        return None
    return lib if lib is not None and hasattr(lib, "malloc_trim") else None


def release_memory() -> None:
    """Return freed memory to the OS: Arrow's pool first, then glibc's heap (pandas and
    numpy allocate there). Costs a few milliseconds; called between phases, not per row."""
    pa.default_memory_pool().release_unused()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
