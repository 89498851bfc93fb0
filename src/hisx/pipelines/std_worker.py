"""Standardization's compute in a second process, so a backfill uses a second core.

Standardizing a batch (:func:`std_batches.compute`: the rules and the feed-ledger rows) is
pure Python/pandas work and holds the GIL; the batch's read and its write are the warehouse's.
On the 2-core bench machine the in-process loop kept one core busy (99 % CPU) while the other
waited. With a worker, batch N+1 is computed in the worker while the main process writes batch
N, in the same transaction as before: only *where* a batch's rules run changes, not what is
read, written, or in which order.

The worker is started once per process (``spawn``: no fork of a process holding warehouse
threads) and kept for later datasets. It is used for a dataset's run only when its pending rows
reach ``HISX_STD_WORKER_MIN_ROWS``: an hour's few thousand rows cost less in-process than
their handover. ``HISX_STD_WORKERS=0`` turns it off. The batch's source rows and its std
rows and ledger cross between the processes as Arrow IPC files in memory (:mod:`handover`),
not through the pipe; only the small rest (quarantine, person keys, figures) is pickled.
Its own ~250 MB come out of DuckDB's pool while it computes (:func:`duckdb_memory`), so the
two processes together stay under one process's marts peak, and the main process's DuckDB
keeps to one thread (:func:`duckdb_threads`): the other core is the worker's. When the
worker falls behind (the persons' rules cost more than their write), the main process
computes the next batch itself (``flow._share``).
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from multiprocessing import spawn

import pandas as pd
import pyarrow as pa

from hisx.config import positive_int_env, size_bytes, size_env
from hisx.pipelines import handover

_POOL: ProcessPoolExecutor | None = None
_DIR: str | None = None  # the pool's handover directory


def std_workers() -> int:
    """Worker processes for standardization's compute (``HISX_STD_WORKERS``): 1 where the
    machine has a second core, else 0 (in-process). More than one does not help: the main
    process writes one batch at a time."""
    raw = os.environ.get("HISX_STD_WORKERS")
    if raw is None:
        return 1 if (os.cpu_count() or 1) > 1 else 0
    if not raw.strip().isdigit() or int(raw) > 1:
        raise ValueError(f"HISX_STD_WORKERS must be 0 or 1, not {raw!r}")
    return int(raw)


def worker_min_rows() -> int:
    """Pending rows from which a dataset's run uses the worker (``HISX_STD_WORKER_MIN_ROWS``,
    100,000: a backfill's, not an hour's)."""
    return positive_int_env("HISX_STD_WORKER_MIN_ROWS", 100_000)


def use_worker(pending_rows: int) -> bool:
    """Whether a dataset's run of ``pending_rows`` computes in the worker (never inside a
    daemonic process, which may not start children)."""
    return (std_workers() > 0 and pending_rows >= worker_min_rows()
            and not mp.current_process().daemon)


def duckdb_memory(current: str | None) -> str | None:
    """DuckDB's cap while a dataset computes in the worker (``HISX_DUCKDB_STD_MEMORY``,
    128MB, never above the warehouse's own ``current`` one; ``None`` for a server warehouse):
    the worker's own ~250 MB come out of the main process's pool, so the two together stay
    near one process's peak. The main process only reads and writes batches then; on the
    31-center standardization 128 MB took the same time as 256 MB, ~130 MB lower.
    """
    if current is None:
        return None
    std = size_env("HISX_DUCKDB_STD_MEMORY", "128MB")
    return std if size_bytes(std) < size_bytes(current) else current


def duckdb_threads() -> int:
    """DuckDB's threads in the main process while a dataset computes in the worker
    (``HISX_DUCKDB_STD_THREADS``, 1): the other core is the worker's. The main process's
    statements are a batch's reads and writes of a few tens of thousands of rows, which a
    second thread only made contend with the worker: the 31-center standardization phase
    took 51.4 / 51.5 s with one thread against 55.2 / 55.3 s with two (in turn)."""
    return positive_int_env("HISX_DUCKDB_STD_THREADS", 1)


def _init() -> None:
    from hisx.pipelines import memory

    memory.use_lean_pool()


def _compute(args: dict, environ: dict[str, str], directory: str):
    from dataclasses import replace

    from hisx.pipelines import memory
    from hisx.pipelines.std_batches import as_arrow, compute

    if environ != os.environ:  # the caller's settings now (the pseudonym key, maps' home)
        os.environ.clear()
        os.environ.update(environ)
    memory.release_memory()  # the previous batch's buffers: an idle worker stays small
    args = {k: handover.take(v) if isinstance(v, handover.Handed) else v
            for k, v in args.items()}
    res, ledger = compute(args, arrow_rows=True)
    std = as_arrow(res.standardized)  # zero-copy; a frame Arrow cannot hold is pickled
    return (replace(res, standardized=handover.put(std, directory) if std is not None
                    else res.standardized),
            handover.put(ledger, directory) if ledger is not None else None)


def result(fut: Future, timeout: float | None = None):
    """A submitted batch's ``(StdResult, ledger)``, its std rows as an Arrow-backed frame
    (the write's conversion to Arrow is then zero-copy) and its ledger as a table, both
    mapped from their handover files."""
    from dataclasses import replace

    res, ledger = fut.result(timeout)
    if isinstance(res.standardized, handover.Handed):
        std = handover.take(res.standardized).to_pandas(types_mapper=pd.ArrowDtype)
        res = replace(res, standardized=std)
    return res, handover.take(ledger) if isinstance(ledger, handover.Handed) else ledger


def discard(fut: Future) -> None:
    """Drop a batch that will not be written: cancelled if not started, else its handover
    files removed once it is done (its error, if any, is the caller's to report)."""
    if fut.cancel():
        return
    try:
        res, ledger = fut.result()
    except Exception:
        return
    for h in (res.standardized, ledger):
        if isinstance(h, handover.Handed):
            handover.discard(h)


_STARTING = threading.local()
_PREPARATION = spawn.get_preparation_data


def _preparation(name: str) -> dict:
    """``spawn``'s start data, without the caller's ``__main__`` while this module starts
    the worker: the worker runs only hisx code, and a script calling hisx without an
    ``if __name__ == "__main__"`` guard would otherwise run again in it (an extraction
    twice, or spawn's bootstrapping error)."""
    data = _PREPARATION(name)
    if getattr(_STARTING, "active", False):
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
    return data


@contextmanager
def _starting() -> Iterator[None]:
    if spawn.get_preparation_data is not _preparation:
        spawn.get_preparation_data = _preparation  # the popen modules look it up by module
    _STARTING.active = True
    try:
        yield
    finally:
        _STARTING.active = False


def pool() -> ProcessPoolExecutor:
    """The process's worker (started at first use, stopped at exit)."""
    global _POOL, _DIR
    if _POOL is None:
        _DIR = handover.new_dir()
        _POOL = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=_init)
        atexit.register(shutdown)
    return _POOL


def submit(args: dict) -> Future:
    """Compute a batch (``read_batch(...)["args"]``) in the worker, in the caller's
    environment as it is now (the worker outlives a change of it, e.g. another key); a worker
    that died (e.g. killed for memory) is replaced once: its own batches' futures raise.
    Collect it with :func:`result` (or :func:`discard` it)."""
    environ = dict(os.environ)
    with _starting():  # a submit starts the worker process when there is none
        try:
            return _submit(args, environ)
        except BrokenProcessPool:
            shutdown()
            return _submit(args, environ)


def _submit(args: dict, environ: dict[str, str]) -> Future:
    ex = pool()
    handed = {k: handover.put(v, _DIR) if isinstance(v, pa.Table) else v
              for k, v in args.items()}
    try:
        return ex.submit(_compute, handed, environ, _DIR)
    except BaseException:
        for v in handed.values():
            if isinstance(v, handover.Handed):
                handover.discard(v)
        raise


def worker_pids() -> list[int]:
    """The running worker's process ids (none before the first use or after shutdown)."""
    return sorted(_POOL._processes) if _POOL is not None and _POOL._processes else []


def shutdown() -> None:
    """Stop the worker (a later :func:`submit` starts a new one)."""
    global _POOL, _DIR
    if _POOL is not None:
        _POOL.shutdown(wait=True, cancel_futures=True)
        _POOL = None
    if _DIR is not None:  # the handovers of batches never collected
        handover.remove_dir(_DIR)
        _DIR = None
