"""The pipeline steps as plain functions (no Dagster): extract → standardize → marts.

Orchestration wraps these; the CLI and tests call them directly. Every step is incremental
and idempotent: extraction follows the ODS cursor, standardization the extraction loads not
yet standardized, marts the business days made dirty by standardization.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import NamedTuple

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from hisx.config import positive_int_env, size_env
from hisx.connectors.source import TableReader
from hisx.connectors.warehouse import Warehouse
from hisx.marts import runner as marts
from hisx.pipelines import memory, ods, runlog, std_worker
from hisx.pipelines import std_batches as sb
from hisx.pipelines.extract import ExtractResult, extract_table
from hisx.pipelines.std_batches import (  # noqa: F401 (re-exported: flow is the public face)
    PERSON_KEY_CACHE_DDL,
    ensure_person_key_cache,
    person_keys,
    person_keys_of,
)
from hisx.pipelines.std_stats import StdStats, Tenant
from hisx.pipelines.std_tables import ensure_std
from hisx.simulator.schema import TABLES

DIRTY_DDL = """CREATE TABLE IF NOT EXISTS mart_dirty (
    dataset VARCHAR(60) NOT NULL, tenant VARCHAR(40) NOT NULL, business_date DATE NOT NULL,
    load_id VARCHAR(40))"""
#: the std load that made the day dirty (NULL: a removal, or a warehouse from before the
#: column): a keyed mart re-loads only the keys changed from the oldest such load on
DIRTY_LOAD_ID = "ALTER TABLE mart_dirty ADD COLUMN IF NOT EXISTS load_id VARCHAR(40)"


def ensure_dirty(wh: Warehouse) -> None:
    wh.execute(DIRTY_DDL)
    wh.execute(DIRTY_LOAD_ID)


def new_load_id() -> str:
    """Sortable, unique load id: UTC timestamp + random suffix."""
    return datetime.now().strftime("%Y%m%dT%H%M%S%f") + "-" + uuid.uuid4().hex[:8]


def ensure_warehouse(wh: Warehouse) -> None:
    ods.ensure_ods(wh)
    runlog.ensure_runlog(wh)
    ensure_dirty(wh)
    ensure_person_key_cache(wh)
    marts.ensure_marts(wh)


# -- source --------------------------------------------------------------------------------
def discover_tenants(engine: sa.Engine) -> list[Tenant]:
    """Centers served by a source, from its organizations table."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT org_code, his_vendor, org_name FROM organizations ORDER BY org_code")
        ).fetchall()
    return [Tenant(r[0], r[1], r[2]) for r in rows]


def extract(
    engine: sa.Engine,
    wh: Warehouse,
    *,
    source: str,
    tenants: Iterable[Tenant],
    tables: Iterable[str] | None = None,
    load_id: str | None = None,
    chunk_rows: int = 50_000,
    upto: dict[str, int] | None = None,
) -> list[ExtractResult]:
    """Extract every table (or ``tables``) for every tenant from the source into ODS.

    ``upto`` caps the row version read per table (the high-water mark a sensor observed), so
    a run extracts exactly what triggered it; tables not in it read to the current mark.
    """
    load_id = load_id or new_load_id()
    wanted = set(tables) if tables is not None else None
    out = []
    for t in TABLES:
        if wanted is not None and t.name not in wanted:
            continue
        reader = TableReader(engine, t, chunk_rows=chunk_rows)
        top = upto.get(t.name) if upto else None
        top = reader.high_water() if top is None else top
        for tenant in tenants:
            out.append(
                extract_table(reader, wh, source=source, tenant=tenant.org_code,
                              load_id=load_id, upto=top)
            )
    return out


def touched_months(wh: Warehouse, load_id: str, tenant: str,
                   tables: Iterable[str] | None = None) -> list[date]:
    """First days of the business months of the ODS rows one load landed for ``tenant``.

    This is what a late backlog dirties: the orchestration re-materializes exactly these
    (center, month) partitions downstream.
    """
    wanted = set(tables) if tables is not None else None
    months: set[date] = set()
    for t in TABLES:
        bt = t.info.get("business_time")
        if not bt or (wanted is not None and t.name not in wanted):
            continue
        df = wh.query_df(
            f'SELECT DISTINCT CAST(date_trunc(\'month\', "{bt}") AS DATE) AS m '
            f"FROM {ods.ods_name(t.name)} WHERE _load_id = :l AND org_code = :t "
            f'AND "{bt}" IS NOT NULL', {"l": load_id, "t": tenant})
        months.update(pd.Timestamp(x).date() for x in df["m"] if pd.notna(x))
    return sorted(months)


# -- standardization -------------------------------------------------------------------------
def std_chunk_rows() -> int:
    """Rows per key-ordered chunk of one center's backlog (``HISX_STD_CHUNK_ROWS``): bounds
    the memory one read of a long backlog takes (transactions: :func:`std_txn_rows`)."""
    return positive_int_env("HISX_STD_CHUNK_ROWS", 150_000)


def std_txn_rows() -> int:
    """Rows written per standardization transaction (``HISX_STD_TXN_ROWS``, 500,000):
    consecutive chunks of any centers up to this many rows form one group. DuckDB writes a
    transaction's full row groups straight to the file and the rest through the WAL, which
    the checkpoint writes again: larger transactions write less twice (700,000 feed-ledger
    rows: 9.3 s in transactions of 150,000 rows, 4.3 s in 350,000). Their memory no longer
    grows with them since ``load_arrow`` releases each loaded table (the charges and
    prescription items of 31 centers: peak RSS 626 MB at 150,000 rows, 606 MB at 500,000,
    613 MB at 1,000,000; 1,320 MB at 500,000 before)."""
    return positive_int_env("HISX_STD_TXN_ROWS", 500_000)


def _key_chunks(wh: Warehouse, table: str, tenant: str, load_ids: list[str],
                size: int) -> list[tuple[int, int, int]]:
    """Inclusive primary-key ranges of at most ``size`` pending rows each, in key order (so a
    natural-key duplicate meets its lower-keyed original in the same or an earlier chunk),
    as ``(lo, hi, rows)``."""
    pk = ods.primary_key(ods.SOURCE_TABLES[table])
    cond, params = sb.pending_filter(pk, [(tenant, load_ids, None)])
    keys = wh.query_arrow(
        f'SELECT "{pk}" AS k FROM {ods.ods_name(table)} WHERE {cond} ORDER BY 1', params
    ).column("k").to_numpy()
    return [(int(keys[i]), int(keys[min(i + size, len(keys)) - 1]), min(size, len(keys) - i))
            for i in range(0, len(keys), size)]


def std_batch_rows() -> int:
    """Rows standardized in one pass (``HISX_STD_BATCH_ROWS``): a transaction group's
    chunks are taken in batches of at most this many rows (several centers' when they share
    their maps), one after the other, so a group of many small centers needs no more memory
    than one center's chunk did. 25,000: on the 31-center backfill it held the peak at
    ~925 MB against ~1,010 for 50,000, for ~2.5 % of the time (bench/changes.md item 31)."""
    return positive_int_env("HISX_STD_BATCH_ROWS", 25_000)


def _single_chunks(wh: Warehouse, table: str, pending: dict[str, list[str]], size: int
                   ) -> dict[str, list[tuple[int, int, int]]]:
    """The chunk of every center whose pending rows fit in one (an hour's changes), found by
    one query for all centers; the others are chunked by :func:`_key_chunks`."""
    if not pending:
        return {}
    pk = ods.primary_key(ods.SOURCE_TABLES[table])
    src, params = sb.pending_from(wh, table, [(t, ls, None) for t, ls in pending.items()])
    t = wh.query_arrow(
        f'SELECT o.org_code, count(*) AS n, min(o."{pk}") AS lo, max(o."{pk}") AS hi '
        f"FROM {src} GROUP BY o.org_code", params)
    out: dict[str, list[tuple[int, int, int]]] = {tenant: [] for tenant in pending}
    for tenant, n, lo, hi in zip(*(t.column(c).to_pylist() for c in ("org_code", "n", "lo", "hi")),
                                 strict=True):
        if n > size:
            del out[tenant]
        else:
            out[tenant] = [(int(lo), int(hi), int(n))]
    return out


def _txn_groups(units: list[tuple], size: int) -> list[list[tuple]]:
    """Consecutive chunks (of any tenants) whose rows add up to at most ``size``: read,
    standardized and written together, in one transaction. Few, large commits: DuckDB writes
    a transaction's full row groups straight to the file instead of to the WAL, and an hour's
    changes of many centers cost one batch per dataset instead of one per center."""
    groups: list[list[tuple]] = []
    rows = 0
    for u in units:
        if not groups or rows + u[3] > size:
            groups.append([])
            rows = 0
        groups[-1].append(u)
        rows += u[3]
    return groups


def standardize_dataset(
    wh: Warehouse, dataset: str, tenant: Tenant, *, now: datetime | None = None,
    load_id: str | None = None,
) -> StdStats:
    """Standardize every ODS row of ``dataset``'s table landed since the last standardization."""
    return standardize_tenants(wh, dataset, [tenant], now=now, load_id=load_id)[0]


def standardize_tenants(
    wh: Warehouse, dataset: str, tenants: Iterable[Tenant], *, now: datetime | None = None,
    load_id: str | None = None,
) -> list[StdStats]:
    """Standardize ``dataset`` for each tenant, in key-ordered chunks of each tenant's backlog.

    Consecutive chunks of up to ``HISX_STD_TXN_ROWS`` rows in all, whatever their tenants,
    form a group (see :func:`_txn_groups`), written in one transaction. Its chunks are read,
    standardized (pure functions) and written in batches of up to ``HISX_STD_BATCH_ROWS``
    rows of centers sharing their maps (``std_batches``): an hour's changes of every center
    are one batch per dataset and vendor, a backfill's memory stays that of one batch. A
    backfill's batches are computed in a worker process while the previous ones are written
    (:mod:`std_worker`); a process pool per tenant, pickling whole envelopes, was measured
    slower (session 9).
    """
    from hisx.pipelines.standardize import DATASETS
    from hisx.standards.datasets import load_schema

    memory.use_lean_pool()
    spec = DATASETS[dataset]
    schema = load_schema(dataset)
    ensure_std(wh, dataset, schema)
    ensure_person_key_cache(wh)
    # what extraction and earlier datasets just wrote, before planning over it (PostgreSQL)
    wh.refresh_statistics([f"ods_{spec.source_table}", "ods_patients", "person_key_cache",
                           f"std_{dataset}"])
    now = now or datetime.now()
    load_id = load_id or new_load_id()
    size = std_chunk_rows()
    tenants = list(tenants)
    totals = {t.org_code: StdStats(dataset, t.org_code) for t in tenants}
    units: list[sb.Unit] = []
    pending = runlog.pending_loads_many(wh, spec.name, spec.source_table,
                                        [t.org_code for t in tenants])
    small = _single_chunks(wh, spec.source_table, pending, size)
    for tenant in tenants:
        loads = pending.get(tenant.org_code, [])
        chunks = (small[tenant.org_code] if tenant.org_code in small else
                  _key_chunks(wh, spec.source_table, tenant.org_code, loads, size) if loads
                  else [])
        for i, (lo, hi, n) in enumerate(chunks):
            # the loads count as standardized once their last chunk is written
            units.append((tenant, loads, (lo, hi), n, loads if i == len(chunks) - 1 else []))
        if loads and not chunks:  # loads whose rows were all superseded: nothing left to read
            with wh.transaction():
                runlog.mark_done(wh, dataset, tenant.org_code, loads)
    groups = _txn_groups(units, std_txn_rows())
    sb.prefetch_person_keys(wh, spec, units)
    if len(groups) > 1 and std_overlap():
        _run_overlapped(wh, spec, schema, groups, now, load_id, totals)
    else:
        worker = std_worker.use_worker(sum(u[3] for u in units))
        cap = std_worker.duckdb_memory(getattr(wh, "memory_limit", None)) if worker else None
        threads = std_worker.duckdb_threads() if worker else None
        with wh.working_memory(cap), wh.working_threads(threads):
            for group in groups:
                # a later batch reads (dedup, person keys) what an earlier one of the group
                # wrote: the transaction sees its own writes
                with wh.transaction():
                    _standardize_group(wh, spec, schema, group, now, load_id, totals,
                                       worker=worker)
    memory.release_memory()
    return list(totals.values())


def _standardize_group(wh: Warehouse, spec, schema, group: list[tuple], now: datetime,
                       load_id: str, totals: dict[str, StdStats], *,
                       worker: bool = False) -> None:
    """Read, standardize and write one transaction group's batches.

    Consecutive batches of other centers (other vendors' maps) are written together while
    their rows fit in one batch (``HISX_STD_BATCH_ROWS``): each write is ~25 statements of a
    few milliseconds whatever its rows, and an hour's changes came as one small batch per
    vendor and dataset. A batch holding a center of the unwritten ones is read only after
    they are written (its dedup and person keys read what they add).

    With ``worker`` (see :mod:`std_worker`) batches are computed in the worker process and
    up to :data:`WORKER_AHEAD` writes wait for their turn: the next batches of other centers
    are read and handed to the worker before the held ones are written, so their rules run
    while those are written; when the worker falls behind, the main process computes the
    next batch itself (:func:`_share`)."""
    limit = std_batch_rows()
    queue: list[list[tuple[dict, object]]] = []  # writes in order, the last being filled
    queued_centers: set[str] = set()
    open_rows = 0

    def write_first() -> None:
        nonlocal queued_centers
        held = queue.pop(0)
        computed = [std_worker.result(c) if isinstance(c, Future) else c for _, c in held]
        for st in _write(wh, spec, schema, [b for b, _ in held], computed):
            totals[st.tenant].add(st)
        queued_centers = {u[0].org_code for w in queue for b, _ in w for u in b["units"]}

    try:
        for units in sb.plan_batches(group, limit):
            centers = {u[0].org_code for u in units}
            rows = sum(u[3] for u in units)
            if centers & queued_centers:
                while queue:
                    write_first()
            elif queue and open_rows + rows > limit:
                if not worker:
                    write_first()  # before the next read: one batch in memory at a time
                queue.append([])
            if not queue:
                queue.append([])
            if len(queue[-1]) == 0:
                open_rows = 0
            batch = sb.read_batch(wh, spec, units, now, load_id, arrow=worker)
            computed = (_share(batch["args"], queue) if worker
                        else sb.compute(batch["args"]))
            queue[-1].append((batch, computed))
            queued_centers |= centers
            open_rows += rows
            if len(queue) > WORKER_AHEAD:  # the worker computes the newer ones meanwhile
                write_first()
        while queue:
            write_first()
    finally:  # after an error, the batches computed ahead are never written
        for _, c in (x for w in queue for x in w):
            if isinstance(c, Future):
                std_worker.discard(c)


#: writes a group keeps queued while the worker computes the batches ahead of them
WORKER_AHEAD = 2
#: batches the worker may have unfinished before the main process computes the next one
#: itself (:func:`_share`)
WORKER_BACKLOG = 2


def _share(args: dict, queue: list[list[tuple[dict, object]]]):
    """The batch handed to the worker, or computed here when the worker still has
    :data:`WORKER_BACKLOG` batches unfinished: where the rules cost more than the write (the
    persons' keys and masks), the main process would otherwise wait on the worker, and
    computing a share of the batches itself keeps both cores busy. What a batch gives does
    not depend on where it is computed (``compute`` is pure; ``arrow_rows`` gives the
    worker's form of the rows)."""
    if _worker_behind(queue):
        return sb.compute(args, arrow_rows=True)
    return std_worker.submit(args)


def _worker_behind(queue: list[list[tuple[dict, object]]]) -> bool:
    """Whether the worker has :data:`WORKER_BACKLOG` of the queued batches unfinished."""
    return sum(1 for w in queue for _, c in w
               if isinstance(c, Future) and not c.done()) >= WORKER_BACKLOG


def _write(wh: Warehouse, spec, schema, batches: list[dict], computed: list) -> list[StdStats]:
    """One group's write (its own function: the failure tests replace it)."""
    return sb.write_group(wh, spec, schema, batches, computed)


def std_overlap() -> bool:
    """Whether a dataset's groups are written by a second thread while the next group is
    read and standardized (``HISX_STD_OVERLAP=1``; default off: on 2 cores it gained
    nothing measurable, the GIL is shared, and two groups in memory took 1.9 GB against 1.2).
    Overlapped, a whole group's batches are held at once: lower ``HISX_STD_TXN_ROWS`` with it."""
    raw = os.environ.get("HISX_STD_OVERLAP", "0").strip().lower()
    if raw not in ("0", "1", "true", "false", "yes", "no", "on", "off"):
        raise ValueError(f"HISX_STD_OVERLAP must be 1 or 0, not {raw!r}")
    return raw in ("1", "true", "yes", "on")


def _run_overlapped(wh: Warehouse, spec, schema, groups: list[list[tuple]], now: datetime,
                    load_id: str, totals: dict[str, StdStats]) -> None:
    """Read + standardize group N+1 on a second connection while a writer thread writes
    group N in its transaction. The writer's time is mostly DuckDB's (compression, GIL
    released) and the standardization's mostly Python's; on the 2-core bench machine the
    two still contended (31-center backfill: standardization 117 s overlapped, 116 s in
    turn), so this is opt-in, for machines with cores to spare.

    A group waits for the write in flight when it holds a chunk of the same center (its
    cross-batch dedup reads the std rows that write adds); every group is still one
    transaction, so a failure leaves whole groups only.
    """
    from concurrent.futures import ThreadPoolExecutor

    def write(batches: list[dict], computed: list) -> list[StdStats]:
        with wh.transaction():
            return _write(wh, spec, schema, batches, computed)

    def collect(f: Future) -> None:
        for st in f.result():
            totals[st.tenant].add(st)

    inflight: Future | None = None
    inflight_tenants: set[str] = set()
    with wh.reader() as rd, ThreadPoolExecutor(1, thread_name_prefix="hisx-std-write") as pool:
        try:
            for group in groups:
                names = {u[0].org_code for u in group}
                if inflight is not None and names & inflight_tenants:
                    collect(inflight)
                    inflight = None
                batches = [sb.read_batch(rd, spec, units, now, load_id)
                           for units in sb.plan_batches(group, std_batch_rows())]
                computed = [sb.compute(b["args"]) for b in batches]
                if inflight is not None:
                    collect(inflight)
                inflight, inflight_tenants = pool.submit(write, batches, computed), names
            if inflight is not None:
                collect(inflight)
                inflight = None
        finally:
            if inflight is not None:  # an error here: let the write end before re-raising
                inflight.exception()


# -- marts -------------------------------------------------------------------------------------
def _merge_ranges(ranges: list[tuple[date, date]], *, full: bool = False,
                  max_ranges: int = 8) -> list[tuple[date, date]]:
    """The union of inclusive day ranges as at most ``max_ranges`` ranges; one covering range
    when ``full``.

    Adjacent days join; beyond ``max_ranges`` the ranges separated by the smallest gaps are
    merged, so a scattered backlog (e.g. patients created over years) costs a few set-based
    statements, while a late day alone re-loads just that day.
    """
    out: list[tuple[date, date]] = []
    for a, b in sorted(ranges):
        if out and a - out[-1][1] <= timedelta(days=1):
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    if full and out:
        return [(out[0][0], max(b for _, b in out))]
    while len(out) > max_ranges:
        i = min(range(len(out) - 1), key=lambda k: out[k + 1][0] - out[k][1])
        out[i : i + 2] = [(out[i][0], max(out[i][1], out[i + 1][1]))]
    return out


class DirtyRun(NamedTuple):
    """Consecutive dirty days of one dataset at one center; ``load_id`` the oldest std load
    that marked one of them, ``unknown`` the marks without one (a removal)."""

    dataset: str
    tenant: str
    lo: date
    hi: date
    load_id: str | None
    unknown: int


#: mart_dirty's days as runs of consecutive days (gaps and islands: a day minus its rank is
#: constant along a run); portable to DuckDB and PostgreSQL (date - integer is a date)
_DIRTY_RUNS = """SELECT dataset, tenant, MIN(business_date) AS lo, MAX(business_date) AS hi,
       MIN(load_id) AS load_id, SUM(unknown) AS unknown
FROM (SELECT dataset, tenant, business_date, load_id, unknown,
             business_date - CAST(ROW_NUMBER() OVER (PARTITION BY dataset, tenant
                                                     ORDER BY business_date) AS INTEGER) AS run
      FROM (SELECT dataset, tenant, business_date, MIN(load_id) AS load_id,
                   COUNT(*) - COUNT(load_id) AS unknown
            FROM mart_dirty{cond} GROUP BY dataset, tenant, business_date) d) r
GROUP BY dataset, tenant, run"""


def _dirty_runs(wh: Warehouse, cond: str, params: dict) -> list[DirtyRun]:
    t = wh.query_arrow(_DIRTY_RUNS.format(cond=cond), params)
    cols = [t.column(c).to_pylist() for c in DirtyRun._fields]
    return [DirtyRun(str(ds), str(tn), _day(lo), _day(hi), None if lid is None else str(lid),
                     int(u or 0)) for ds, tn, lo, hi, lid, u in zip(*cols, strict=True)]


def _day(x: date | datetime) -> date:
    return x.date() if isinstance(x, datetime) else x


def _since_of(runs: list[DirtyRun]) -> dict[tuple[str, str], str | None]:
    """{(tenant, dataset): the oldest std load that marked one of its days dirty}; None when
    a day was marked without a load id (a removal): the whole range must be loaded."""
    out: dict[tuple[str, str], str | None] = {}
    for r in runs:
        k = (r.tenant, r.dataset)
        lid = None if r.unknown or r.load_id is None else r.load_id
        if k not in out:
            out[k] = lid
        elif out[k] is not None:
            out[k] = None if lid is None else min(out[k], lid)  # type: ignore[type-var]
    return out


def _oldest(since: dict[tuple[str, str], str | None], mart: str,
            tenants: list[str]) -> str | None:
    """The load id a keyed mart re-loads changes from, for ``tenants`` (None: load whole)."""
    ids = [since[(t, ds)] for t in tenants for ds in marts.MART_DEPS[mart] if (t, ds) in since]
    return None if not ids or None in ids else min(ids)  # type: ignore[type-var]


def mart_memory() -> str:
    """DuckDB working memory while marts load (``HISX_DUCKDB_MART_MEMORY``, default 512MB)."""
    return size_env("HISX_DUCKDB_MART_MEMORY", "512MB")


def build_marts(wh: Warehouse, marts_: tuple[str, ...] = marts.MARTS, *,
                tenants: Iterable[str] | None = None, day_from: date | None = None,
                day_to: date | None = None) -> dict[str, list]:
    """Re-load each mart for the business days its datasets made dirty, then clear them.

    ``tenants`` / ``day_from`` / ``day_to`` limit the work to one partition (center × month);
    dirty days outside it stay for their own partition. Returns the reloaded (first, last)
    day ranges per tenant.
    """
    # what standardization freed goes back first: the marts' DuckDB cap comes on top of it;
    # its idle worker process (~250 MB on the 31-center backfill) too, started again by the
    # next backfill (~1 s)
    memory.release_memory()
    std_worker.shutdown()
    where, params = [], {}
    if day_from is not None:
        where.append("business_date >= :lo")
        params["lo"] = day_from
    if day_to is not None:
        where.append("business_date <= :hi")
        params["hi"] = day_to
    if tenants is not None:
        names = {f"t{i}": t for i, t in enumerate(tenants)}
        if not names:
            return {}
        where.append(f"tenant IN ({', '.join(':' + k for k in names)})")
        params.update(names)
    cond = (" WHERE " + " AND ".join(where)) if where else ""
    # the dirty days as runs of consecutive days per (center, dataset), counted in the
    # warehouse: a city backfill marks ~1.4 M (center, day)s (patients created over years),
    # which as Python dates and sets held ~500 MB through the whole marts phase
    runs = _dirty_runs(wh, cond, params)
    done: dict[str, list] = {}
    groups: dict[str, dict[str, list[tuple[date, date]]]] = {}  # {tenant: {dataset: runs}}
    since = _since_of(runs)
    for r in runs:
        groups.setdefault(r.tenant, {}).setdefault(r.dataset, []).append((r.lo, r.hi))
    # PostgreSQL plans each mart over what standardization and the marts before it just
    # wrote: their statistics first (a no-op on DuckDB, and for tables barely changed)
    fresh = [f"std_{d}" for d in sorted({r.dataset for r in runs})] + ["quarantine"]
    for name in marts_:
        if runs:
            wh.refresh_statistics(fresh)
            fresh = [name]
        # tenants that need the same range load together (one set-based statement per range
        # for the tenant-separable marts: a city backfill is one range for every center)
        by_range: dict[tuple[date, date], list[str]] = {}
        per_tenant: dict[str, list[tuple[date, date]]] = {}
        for tenant, by_ds in groups.items():
            # a mart that reads no std dataset (dim_date, the load-log DQ) follows every one
            deps = set(marts.MART_DEPS.get(name, ())) or set(by_ds)
            # the union of the datasets' runs: the same ranges their days would give
            ranges = _merge_ranges([r for ds, rs in by_ds.items() if ds in deps for r in rs])
            if ranges and name in marts.FULL_REFRESH:  # whole tenant, once
                ranges = [(ranges[0][0], ranges[-1][1])]
            per_tenant[tenant] = ranges
            for r in ranges:
                by_range.setdefault(r, []).append(tenant)
                if r not in done.setdefault(tenant, []):
                    done[tenant].append(r)
        if len(by_range) > 1 and marts.tenant_separable(name):
            # centers whose dirty days differ (patients created over years) still load in a
            # few set-based statements: the union of their ranges, each for every center
            # with a dirty day in it (re-loading a clean day of a center rewrites equal rows)
            by_range = {}
            for lo, hi in _merge_ranges([r for rs in per_tenant.values() for r in rs],
                                        full=name in marts.FULL_REFRESH):
                by_range[(lo, hi)] = [t for t, rs in per_tenant.items()
                                      if any(a <= hi and b >= lo for a, b in rs)]
        with wh.working_memory(mart_memory()):
            for (lo, hi), tenants_ in by_range.items():
                marts.load_mart_many(wh, name, tenants_, lo, hi,
                                     _oldest(since, name, tenants_) if marts.keyed(name)
                                     else None)
    if not runs:
        return done
    with wh.transaction():  # exactly the (dataset, center, day)s read above, in one statement
        marts.clear_dirty_keys(wh, list(groups))
        wh.execute("DROP TABLE IF EXISTS stage_dirty_done")
        wh.execute("CREATE TEMPORARY TABLE stage_dirty_done (dataset VARCHAR(60), "
                   "tenant VARCHAR(40), lo DATE, hi DATE)")
        wh.load_arrow("stage_dirty_done", pa.table({
            "dataset": pa.array([r.dataset for r in runs], pa.string()),
            "tenant": pa.array([r.tenant for r in runs], pa.string()),
            "lo": pa.array([r.lo for r in runs], pa.date32()),
            "hi": pa.array([r.hi for r in runs], pa.date32())}))
        # every day of a run was dirty when read: deleting the runs deletes those rows
        wh.execute("DELETE FROM mart_dirty WHERE EXISTS (SELECT 1 FROM stage_dirty_done s "
                   "WHERE s.dataset = mart_dirty.dataset AND s.tenant = mart_dirty.tenant "
                   "AND mart_dirty.business_date BETWEEN s.lo AND s.hi)")
        wh.execute("DROP TABLE stage_dirty_done")
    return done


@dataclass
class RunResult:
    extracted: list[ExtractResult]
    standardized: dict[str, list[StdStats]]
    marts: dict[str, list]


def run_all(engine: sa.Engine, wh: Warehouse, *, source: str = "his",
            now: datetime | None = None) -> RunResult:
    """Every step once for every tenant of a single-database source: extract → standardize
    all datasets → marts (no feed publishing). What tests, benchmarks and scripts use to build
    a warehouse without Dagster; the Dagster `ingest` job runs the same steps per center."""
    from hisx.pipelines.standardize import DATASETS

    ensure_warehouse(wh)
    tenants = discover_tenants(engine)
    extracted = extract(engine, wh, source=source, tenants=tenants)
    std = {d: standardize_tenants(wh, d, tenants, now=now) for d in DATASETS}
    return RunResult(extracted, std, build_marts(wh))
