"""Standardizing a center's backlog in key-ordered chunks (HISX_STD_CHUNK_ROWS) gives exactly
what one batch gives: std rows, quarantine, feed ledger and marts, with conservation per
tenant — so memory is bounded by the chunk, not by the backlog."""

from __future__ import annotations

import hashlib
import os
from datetime import date, datetime

import pytest
import sqlalchemy as sa

from hisx.connectors.warehouse import Warehouse
from hisx.marts import runner
from hisx.pipelines import feed_render, flow, std_worker
from hisx.standards.datasets import DATASETS

# times of the run, and mart_dq_load_daily's count of batches (more chunks, more batches)
VOLATILE = {"quarantined_at", "enqueued_at", "logged_at", "seq", "_loaded_at", "_load_id",
            "batches"}


KEY = "test-key-aaaaaaaaaaaaaaaaaaaaaaaa"
#: rows per chunk of the chunked runs: each center's larger datasets take 4 to 10 chunks
CHUNK = 199


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> str:
    from hisx.simulator import simulate

    url = f"sqlite:///{tmp_path_factory.mktemp('chunks') / 'his.sqlite'}"
    simulate(url, centers=2, months=1, visits_per_month=900, seed=11, start=date(2026, 8, 1),
             progress=False)
    return url


@pytest.fixture(scope="module")
def six_centers(tmp_path_factory) -> str:
    from hisx.simulator import simulate

    url = f"sqlite:///{tmp_path_factory.mktemp('six') / 'his.sqlite'}"
    simulate(url, centers=6, months=1, visits_per_month=150, seed=5, defect_rate=0.08,
             start=date(2026, 8, 1), progress=False)
    return url


@pytest.fixture(scope="module")
def whole(source, tmp_path_factory) -> dict[str, str]:
    """The source standardized as one batch per center and dataset, in-process: what every
    chunked, worker or interrupted run must give (built once for the module's tests)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HISX_PSEUDO_KEY", KEY)
        return build(source, tmp_path_factory.mktemp("whole") / "whole.duckdb", 10**9, mp)


def build(url: str, path, chunk: int, monkeypatch, overlap: bool = True,
          per_center: bool = False, batch: int = 50_000, worker: bool = False
          ) -> dict[str, str]:
    # the worker process computes the batches only when asked (the tests' runs are small)
    monkeypatch.setenv("HISX_STD_WORKERS", "1" if worker else "0")
    monkeypatch.setenv("HISX_STD_WORKER_MIN_ROWS", "1")
    monkeypatch.setenv("HISX_STD_CHUNK_ROWS", str(chunk))
    monkeypatch.setenv("HISX_STD_TXN_ROWS", str(chunk))  # a group per chunk's worth of rows
    monkeypatch.setenv("HISX_STD_BATCH_ROWS", str(batch))
    monkeypatch.setenv("HISX_STD_OVERLAP", "1" if overlap else "0")
    engine = sa.create_engine(url)
    out = {}
    target = path if isinstance(path, str) and "://" in path else f"duckdb:///{path}"
    with Warehouse.from_url(target) as wh:
        flow.ensure_warehouse(wh)
        tenants = flow.discover_tenants(engine)
        flow.extract(engine, wh, source="his", tenants=tenants)
        runs = [[t] for t in tenants] if per_center else [tenants]
        stats = [s for d in DATASETS for ts in runs for s in flow.standardize_tenants(
            wh, d, ts, now=datetime(2027, 1, 1), load_id="L-std")]
        assert all(s.conserved for s in stats)
        flow.build_marts(wh)
        out["pending"] = str(sum(len(flow.runlog.pending_loads(wh, d, s.source_table, t.org_code))
                                 for d, s in DATASETS.items() for t in tenants))
        tables = [f"std_{d}" for d in DATASETS] + ["quarantine", "feed_ledger",
                                                    "person_key_cache", *runner.MARTS]
        for t in tables:  # the ledger as it would be sent (an envelope stored or built)
            df = (feed_render.messages(wh).to_pandas() if t == "feed_ledger"
                  else wh.query_df(f"SELECT * FROM {t}"))
            df = df[[c for c in df.columns if c not in VOLATILE]]
            df = df.sort_values(list(df.columns), kind="mergesort").reset_index(drop=True)
            out[t] = hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()
        out["rows_in"] = str(sum(s.rows_in for s in stats))
    engine.dispose()
    std_worker.shutdown()  # not kept for the next test
    return out


@pytest.mark.parametrize("mode", ["overlapped", "in-turn", "worker"])
def test_chunked_equals_one_batch(source, whole, tmp_path, monkeypatch, mode) -> None:
    """Small chunks make many transaction groups (each holding chunks of both centers);
    overlapped, a writer thread writes one while the next is standardized; with the worker,
    a second process computes the next batches while the held ones are written."""
    monkeypatch.setenv("HISX_PSEUDO_KEY", KEY)
    writes: list[list[set[str]]] = []
    real, submitted = flow._write, []

    def write(wh, spec, schema, batches, computed):
        writes.append([{u[0].org_code for u in b["units"]} for b in batches])
        return real(wh, spec, schema, batches, computed)

    def submit(args):
        submitted.append(args["dataset"])
        return real_submit(args)

    real_submit = std_worker.submit
    monkeypatch.setattr(flow, "_write", write)
    monkeypatch.setattr(std_worker, "submit", submit)
    # batches of at most 1.5 chunks: a group's chunks are standardized one or two at a time
    chunked = build(source, tmp_path / "chunked.duckdb", CHUNK, monkeypatch,
                    mode == "overlapped", batch=CHUNK * 3 // 2, worker=mode == "worker")
    # every batch went to the worker (and only in its mode): it computed all nine datasets
    assert set(submitted) == (set(DATASETS) if mode == "worker" else set())
    assert int(whole["rows_in"]) > 20 * CHUNK  # many chunks per center and dataset
    assert whole["pending"] == chunked["pending"] == "0"
    assert chunked == whole
    # batches written together never hold one center twice (a center's next chunk reads
    # what its previous one wrote)
    assert writes and all(sum(len(c) for c in w) == len(set().union(*w)) for w in writes)


def test_batches_shared_between_worker_and_main_process_equal_one_batch(
        source, whole, tmp_path, monkeypatch) -> None:
    """When the worker falls behind, the main process computes the next batches itself
    (here every other batch: the worker's and the main process's batches interleave within
    groups and writes); what is written is still what one batch gives."""
    monkeypatch.setenv("HISX_PSEUDO_KEY", KEY)
    submitted: list[str] = []
    in_main: list[str] = []
    real_submit, real_compute = std_worker.submit, flow.sb.compute

    def submit(args):
        submitted.append(args["dataset"])
        return real_submit(args)

    def compute(args, **kw):
        if kw.get("arrow_rows"):  # the worker's form of the rows, computed here
            in_main.append(args["dataset"])
        return real_compute(args, **kw)

    threads: list[int] = []
    real_write = flow._write

    def write(wh, spec, schema, batches, computed):
        threads.append(wh.scalar("SELECT current_setting('threads')"))
        return real_write(wh, spec, schema, batches, computed)

    monkeypatch.setattr(std_worker, "submit", submit)
    monkeypatch.setattr(flow.sb, "compute", compute)
    monkeypatch.setattr(flow, "_write", write)
    turns = iter(range(10**6))
    monkeypatch.setattr(flow, "_worker_behind", lambda queue: next(turns) % 2 == 1)
    shared = build(source, tmp_path / "shared.duckdb", CHUNK, monkeypatch, False,
                   batch=CHUNK // 2, worker=True)
    assert set(submitted) == set(DATASETS)
    assert set(in_main) == set(DATASETS) and len(in_main) > 4 * len(DATASETS)
    # with the worker computing, the main process's DuckDB keeps to one thread
    assert threads and set(threads) == {std_worker.duckdb_threads()} == {1}
    assert shared == whole


@pytest.mark.postgres
def test_worker_on_a_postgresql_warehouse_equals_in_process(source, pg_database,
                                                            monkeypatch) -> None:
    """The worker's batches, read from and written into a PostgreSQL warehouse (its COPY
    loads, the ledger's unique key), give what in-process standardization gives there."""
    monkeypatch.setenv("HISX_PSEUDO_KEY", KEY)
    submitted: list[str] = []
    real_submit = std_worker.submit

    def submit(args):
        submitted.append(args["dataset"])
        return real_submit(args)

    monkeypatch.setattr(std_worker, "submit", submit)
    in_process = build(source, pg_database, CHUNK, monkeypatch, False, batch=CHUNK * 3 // 2)
    assert submitted == []
    admin = sa.create_engine(pg_database, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:  # the same database, emptied
        c.execute(sa.text("DROP SCHEMA public CASCADE"))
        c.execute(sa.text("CREATE SCHEMA public"))
    admin.dispose()
    worker = build(source, pg_database, CHUNK, monkeypatch, False, batch=CHUNK * 3 // 2,
                   worker=True)
    assert set(submitted) == set(DATASETS)
    assert int(worker["rows_in"]) > 20 * CHUNK and worker["pending"] == "0"
    assert worker == in_process


def test_centers_sharing_maps_standardize_in_one_batch_as_each_alone(six_centers, tmp_path,
                                                                     monkeypatch) -> None:
    """Six centers, two per vendor: one run over all (one batch per vendor and dataset, as
    an hour's changes are standardized, the three written together) gives the warehouse of
    one run per center."""
    monkeypatch.setenv("HISX_PSEUDO_KEY", KEY)
    calls: list[list[int]] = []
    real = flow._write

    def write(wh, spec, schema, batches, computed):
        calls.append([len({u[0].org_code for u in b["units"]}) for b in batches])
        return real(wh, spec, schema, batches, computed)

    monkeypatch.setattr(flow, "_write", write)
    together = build(six_centers, tmp_path / "together.duckdb", 10**9, monkeypatch, False)
    # a batch: a vendor's two centers; one write per dataset, of the three vendors' batches
    assert calls and all(c == [2, 2, 2] for c in calls)
    assert len(calls) == len(DATASETS)
    alone = build(six_centers, tmp_path / "alone.duckdb", 10**9, monkeypatch, False,
                  per_center=True)
    assert together == alone


@pytest.mark.parametrize("mode", ["overlapped", "worker"])
def test_failed_write_leaves_whole_groups_and_a_rerun_converges(source, whole, tmp_path,
                                                               monkeypatch, mode) -> None:
    """The writer thread (or, with the worker computing the batches ahead, the main
    process) fails on its 5th write: the groups written before stay, the failed group leaves
    nothing, the error reaches the caller, and a rerun gives the same warehouse as an
    uninterrupted run."""
    monkeypatch.setenv("HISX_PSEUDO_KEY", KEY)
    whole = dict(whole)  # the module's, less what a rerun counts differently (below)
    txn = 3 * CHUNK + 3 if mode == "worker" else CHUNK  # a worker's group: three writes
    monkeypatch.setenv("HISX_STD_CHUNK_ROWS", str(CHUNK))
    monkeypatch.setenv("HISX_STD_TXN_ROWS", str(txn))
    monkeypatch.setenv("HISX_STD_BATCH_ROWS", str(CHUNK))
    monkeypatch.setenv("HISX_STD_OVERLAP", "1" if mode == "overlapped" else "0")
    monkeypatch.setenv("HISX_STD_WORKERS", "1" if mode == "worker" else "0")
    engine = sa.create_engine(source)
    real, calls = flow._write, []

    def write_failing(wh, spec, schema, batches, computed):
        calls.append(len(batches))
        if len(calls) == 5:
            raise RuntimeError("warehouse disk full")
        return real(wh, spec, schema, batches, computed)

    path = tmp_path / "resumed.duckdb"
    with Warehouse.from_url(f"duckdb:///{path}") as wh:
        flow.ensure_warehouse(wh)
        tenants = flow.discover_tenants(engine)
        flow.extract(engine, wh, source="his", tenants=tenants)
        monkeypatch.setattr(flow, "_write", write_failing)
        with pytest.raises(RuntimeError, match="disk full"):
            flow.standardize_tenants(wh, "person", tenants, now=datetime(2027, 1, 1),
                                     load_id="L-std")
        monkeypatch.setattr(flow, "_write", real)
        logged = int(wh.scalar("SELECT coalesce(sum(standardized + quarantined), 0) "
                               "FROM std_log WHERE dataset = 'person'"))
        stored = int(wh.scalar("SELECT count(*) FROM std_person")) + int(wh.scalar(
            "SELECT count(*) FROM quarantine WHERE dataset = 'person'"))
        # whole groups only, each with its log row (a worker's group: several writes)
        assert 0 < stored == logged < (txn if mode == "worker" else CHUNK * 5)
    engine.dispose()
    resumed = build(source, path, CHUNK, monkeypatch)  # extract finds nothing new; std resumes
    # the rerun re-reads only what was pending, and the load-log DQ mart counts the chunks
    # standardized twice (it reports processing, not data)
    for k in ("rows_in", "mart_dq_load_daily"):
        resumed.pop(k), whole.pop(k)
    assert resumed == whole


def test_a_failed_write_drops_the_batches_computed_ahead(six_centers, tmp_path,
                                                          monkeypatch) -> None:
    """Six centers' batches, computed ahead in the worker while the first ones are written:
    when a write fails, the batches queued behind it are dropped with their handover files
    (none is left in memory), and nothing of the failed transaction is stored."""
    monkeypatch.setenv("HISX_PSEUDO_KEY", KEY)
    monkeypatch.setenv("HISX_STD_WORKERS", "1")
    monkeypatch.setenv("HISX_STD_WORKER_MIN_ROWS", "1")
    monkeypatch.setenv("HISX_STD_BATCH_ROWS", "50")  # a batch per center: others run ahead
    engine = sa.create_engine(six_centers)
    real, calls, dropped = flow._write, [], []
    real_discard = std_worker.discard

    def write_failing(wh, spec, schema, batches, computed):
        calls.append(len(batches))
        if len(calls) == 2:
            raise RuntimeError("warehouse disk full")
        return real(wh, spec, schema, batches, computed)

    def discard(fut):
        dropped.append(fut)
        real_discard(fut)

    with Warehouse.from_url(f"duckdb:///{tmp_path / 'wh.duckdb'}") as wh:
        flow.ensure_warehouse(wh)
        tenants = flow.discover_tenants(engine)
        flow.extract(engine, wh, source="his", tenants=tenants)
        monkeypatch.setattr(flow, "_write", write_failing)
        monkeypatch.setattr(std_worker, "discard", discard)
        try:
            with pytest.raises(RuntimeError, match="disk full"):
                flow.standardize_tenants(wh, "person", tenants, now=datetime(2027, 1, 1))
            assert dropped and all(f.done() for f in dropped)
            assert std_worker._DIR and os.listdir(std_worker._DIR) == []
        finally:
            std_worker.shutdown()
        assert int(wh.scalar("SELECT count(*) FROM std_person")) == 0  # one transaction
    engine.dispose()


def test_chunk_size_must_be_positive(monkeypatch) -> None:
    monkeypatch.setenv("HISX_STD_CHUNK_ROWS", "0")
    with pytest.raises(ValueError, match="HISX_STD_CHUNK_ROWS"):
        flow.std_chunk_rows()


def test_transaction_groups_hold_chunks_up_to_the_txn_rows(monkeypatch) -> None:
    """Chunks stay small (memory) while a transaction takes several of them (DuckDB writes
    a large append straight to the file, a small one through the WAL and again later)."""
    monkeypatch.setenv("HISX_STD_CHUNK_ROWS", "100")
    monkeypatch.setenv("HISX_STD_TXN_ROWS", "350")
    units = [(None, ["L1"], (i * 100, i * 100 + 99), 100, []) for i in range(8)]
    groups = flow._txn_groups(units, flow.std_txn_rows())
    assert [len(g) for g in groups] == [3, 3, 2]
    monkeypatch.delenv("HISX_STD_TXN_ROWS")
    assert flow.std_txn_rows() == 500_000
    monkeypatch.setenv("HISX_STD_TXN_ROWS", "-1")
    with pytest.raises(ValueError, match="HISX_STD_TXN_ROWS"):
        flow.std_txn_rows()


@pytest.mark.parametrize("worker", [True, False])
def test_duckdb_cap_while_the_worker_computes_then_back(source, tmp_path, monkeypatch,
                                                        worker) -> None:
    """With the worker, the batches are written under HISX_DUCKDB_STD_MEMORY (the worker's
    memory taken out of DuckDB's pool); the warehouse's own cap is back afterwards. In
    process, the cap is the warehouse's throughout."""
    monkeypatch.setenv("HISX_PSEUDO_KEY", KEY)
    monkeypatch.setenv("HISX_STD_WORKERS", "1" if worker else "0")
    monkeypatch.setenv("HISX_STD_WORKER_MIN_ROWS", "1")
    monkeypatch.setenv("HISX_DUCKDB_MEMORY", "256MB")
    monkeypatch.setenv("HISX_DUCKDB_STD_MEMORY", "96MB")
    engine = sa.create_engine(source)
    real, seen = flow._write, []

    def write(wh, spec, schema, batches, computed):
        seen.append(wh.scalar("SELECT current_setting('memory_limit')"))
        return real(wh, spec, schema, batches, computed)

    with Warehouse.from_url(f"duckdb:///{tmp_path / 'cap.duckdb'}") as wh:
        shown = {}
        for size in ("96MB", "256MB"):
            wh.execute(f"SET memory_limit = '{size}'")
            shown[size] = wh.scalar("SELECT current_setting('memory_limit')")
        flow.ensure_warehouse(wh)
        tenants = flow.discover_tenants(engine)
        flow.extract(engine, wh, source="his", tenants=tenants)
        monkeypatch.setattr(flow, "_write", write)
        try:
            stats = flow.standardize_tenants(wh, "person", tenants, now=datetime(2027, 1, 1))
        finally:
            std_worker.shutdown()
        assert all(s.conserved for s in stats) and seen
        assert set(seen) == {shown["96MB"] if worker else shown["256MB"]}
        assert wh.scalar("SELECT current_setting('memory_limit')") == shown["256MB"]
    engine.dispose()


def test_the_worker_is_behind_with_backlog_batches_unfinished(monkeypatch) -> None:
    """Only the worker's unfinished batches count: not its finished ones, nor the batches
    computed in the main process."""
    from concurrent.futures import Future

    monkeypatch.setattr(flow, "WORKER_BACKLOG", 2)
    done, running = Future(), Future()
    done.set_result(None)
    queue = [[({}, done), ({}, running)], [({}, ("computed here", None))]]
    assert not flow._worker_behind(queue)  # one unfinished
    queue.append([({}, Future())])
    assert flow._worker_behind(queue)
