"""The worker process for standardization's compute: when it is used, and that what it hands
back is what the in-process compute gives (the end-to-end equality is in test_std_chunks)."""

from __future__ import annotations

import os
from datetime import datetime

import pandas as pd
import pyarrow as pa
import pytest

from hisx.pipelines import std_worker
from hisx.pipelines.std_batches import _to_arrow, _with_arrivals, compute
from hisx.pipelines.std_tables import ARRIVAL
from hisx.standards.maps import load_maps
from hisx.standards.samples import sample_source


def test_worker_setting(monkeypatch) -> None:
    monkeypatch.setenv("HISX_STD_WORKERS", "0")
    assert std_worker.std_workers() == 0 and not std_worker.use_worker(10**9)
    monkeypatch.setenv("HISX_STD_WORKERS", "1")
    monkeypatch.setenv("HISX_STD_WORKER_MIN_ROWS", "1000")
    assert std_worker.use_worker(1000) and not std_worker.use_worker(999)
    for bad in ("2", "-1", "yes"):
        monkeypatch.setenv("HISX_STD_WORKERS", bad)
        with pytest.raises(ValueError, match="HISX_STD_WORKERS"):
            std_worker.std_workers()
    monkeypatch.delenv("HISX_STD_WORKERS")
    monkeypatch.setattr(std_worker.os, "cpu_count", lambda: 1)
    assert std_worker.std_workers() == 0  # one core: nothing to gain
    monkeypatch.setattr(std_worker.os, "cpu_count", lambda: 2)
    assert std_worker.std_workers() == 1
    monkeypatch.delenv("HISX_STD_WORKER_MIN_ROWS")
    assert std_worker.worker_min_rows() == 100_000


def test_worker_computes_what_the_process_computes(monkeypatch) -> None:
    """A person batch computed in the worker (spawned: it reads the key from the same
    environment) equals the in-process compute, std rows, quarantine and ledger rows."""
    monkeypatch.setenv("HISX_PSEUDO_KEY", "worker-test-key-00000000000000")
    maps = load_maps("W-ORG", "vendor_a")
    df = sample_source("person", 400, maps, tenant="W-ORG")
    df.loc[::9, "id_no"] = "not-an-id"
    args = dict(dataset="person", df=df, tenant="W-ORG", vendor="vendor_a", load_id="L-w",
                now=datetime(2027, 1, 1), person_keys=None, existing_keys=None, maps=maps)
    try:
        res_w, ledger_w = std_worker.result(std_worker.submit(args), timeout=120)
        # the rows as read for the worker (the warehouse's Arrow table): handed as a file
        as_read = {**args, "df": pa.Table.from_pandas(df, preserve_index=False),
                   "tenant": None}
        res_t, ledger_t = std_worker.result(std_worker.submit(as_read), timeout=120)
        handed = os.listdir(std_worker._DIR)
    finally:
        std_worker.shutdown()
    assert handed == []  # every handover file was taken
    res, ledger = compute(args)
    res_a, _ = compute(as_read)
    assert isinstance(res_w.standardized["person_key"].dtype, pd.ArrowDtype)
    assert len(res.quarantined) > 0 and len(res.standardized) > 0
    # the worker's std rows: the in-process ones plus the arrival column the write adds
    std = pa.Table.from_pandas(res.standardized, preserve_index=False)
    written = _with_arrivals(_to_arrow(res.standardized, list(res.standardized)), df, "patient_id")
    for got, want in ((res_w, std), (res_t, pa.Table.from_pandas(res_a.standardized,
                                                                preserve_index=False))):
        table = pa.Table.from_pandas(got.standardized, preserve_index=False)
        assert table.drop_columns([ARRIVAL]).equals(want)
        assert table[ARRIVAL].equals(written[ARRIVAL]) and table[ARRIVAL].null_count == 0
    assert len(ledger_t) == len(ledger)
    pd.testing.assert_frame_equal(res_w.quarantined, res.quarantined)
    differ = [c for c in ledger.column_names if not ledger_w[c].equals(ledger[c])]
    assert differ == ["enqueued_at"]  # the time each was built
    assert res_w.deduplicated_by == res.deduplicated_by


def test_worker_follows_the_callers_environment(monkeypatch) -> None:
    """The worker outlives a change of the caller's environment (another pseudonym key):
    each batch is computed with the settings of its submission."""
    maps = load_maps("W-ORG", "vendor_a")
    df = sample_source("person", 50, maps, tenant="W-ORG")
    args = dict(dataset="person", df=df, tenant="W-ORG", vendor="vendor_a", load_id="L-w",
                now=datetime(2027, 1, 1), person_keys=None, existing_keys=None, maps=maps)
    keys = []
    try:
        for secret in ("first-key-0000000000000000", "second-key-000000000000000"):
            monkeypatch.setenv("HISX_PSEUDO_KEY", secret)
            res, _ = std_worker.result(std_worker.submit(args), timeout=120)
            assert res.standardized["person_key"].tolist() == (
                compute(args)[0].standardized["person_key"].tolist())
            keys.append(res.standardized["person_key"].iloc[0])
    finally:
        std_worker.shutdown()
    assert keys[0] != keys[1]


def test_marts_stop_the_idle_worker(tmp_path) -> None:
    """The marts need the memory: building them stops the worker a backfill left running
    (the next backfill starts it again)."""
    from hisx.connectors.warehouse import Warehouse
    from hisx.pipelines import flow

    std_worker.pool().submit(int, "1").result(timeout=120)
    assert std_worker.worker_pids()
    with Warehouse.from_url(f"duckdb:///{tmp_path / 'wh.duckdb'}") as wh:
        flow.ensure_warehouse(wh)
        flow.build_marts(wh)
    assert std_worker.worker_pids() == []


def test_duckdb_cap_while_the_worker_computes(monkeypatch) -> None:
    """The worker's memory comes out of DuckDB's pool: 128MB unless the warehouse's own cap
    is lower; nothing for a server warehouse."""
    monkeypatch.delenv("HISX_DUCKDB_STD_MEMORY", raising=False)
    assert std_worker.duckdb_memory(None) is None
    assert std_worker.duckdb_memory("256MB") == "128MB"
    assert std_worker.duckdb_memory("1GiB") == "128MB"
    assert std_worker.duckdb_memory("64MB") == "64MB"
    assert std_worker.duckdb_memory("100MiB") == "100MiB"  # 104.9 MB
    monkeypatch.setenv("HISX_DUCKDB_STD_MEMORY", "300MB")
    assert std_worker.duckdb_memory("256MB") == "256MB"
    monkeypatch.setenv("HISX_DUCKDB_STD_MEMORY", "lots")
    with pytest.raises(ValueError, match="HISX_DUCKDB_STD_MEMORY"):
        std_worker.duckdb_memory("256MB")


SCRIPT = '''
import sys
from datetime import datetime

open(sys.argv[1], "a").write("the script ran\\n")  # no __main__ guard, on purpose
from hisx.pipelines import std_worker
from hisx.standards.maps import load_maps
from hisx.standards.samples import sample_source

maps = load_maps("W-ORG", "vendor_a")
args = dict(dataset="person", df=sample_source("person", 5, maps, tenant="W-ORG"),
            tenant="W-ORG", vendor="vendor_a", load_id="L-s", now=datetime(2027, 1, 1),
            person_keys=None, existing_keys=None, maps=maps)
res, _ = std_worker.result(std_worker.submit(args), timeout=120)
std_worker.shutdown()
print(len(res.standardized) + len(res.quarantined))
'''


def test_worker_does_not_run_the_callers_script_again(tmp_path) -> None:
    """A script calling hisx without an ``if __name__ == "__main__"`` guard: the worker is
    started without the script as its main module, so the script runs once and the batch
    is computed (spawn would otherwise run it again in the worker, which fails to start)."""
    import os
    import subprocess
    import sys

    script, marker = tmp_path / "unguarded.py", tmp_path / "ran.txt"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(marker)], capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "HISX_PSEUDO_KEY": "script-key-00000000000000"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-1] == "5"
    assert marker.read_text().splitlines() == ["the script ran"]


def test_duckdb_threads_while_the_worker_computes(monkeypatch) -> None:
    monkeypatch.delenv("HISX_DUCKDB_STD_THREADS", raising=False)
    assert std_worker.duckdb_threads() == 1
    monkeypatch.setenv("HISX_DUCKDB_STD_THREADS", "2")
    assert std_worker.duckdb_threads() == 2
    monkeypatch.setenv("HISX_DUCKDB_STD_THREADS", "0")
    with pytest.raises(ValueError, match="HISX_DUCKDB_STD_THREADS"):
        std_worker.duckdb_threads()
