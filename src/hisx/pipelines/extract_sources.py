"""Extraction from the configured production sources (``HISX_SOURCES``) into the ODS.

For replicated sources (``primary:`` + ``replicas:``/``listener:``) every (table, tenant) goes
through a :class:`~hisx.connectors.source.extract.SourceExtractor` (up to the source's
``max_readers`` of them in parallel, :func:`extract_parallel`): pages are read on a healthy
readable replica (the primary only under the ``primary`` policy, recorded), up to the
commit-safe bound (PostgreSQL fences / SQL Server ``MIN_ACTIVE_ROWVERSION() - 1``), with lag
checked before the run and between pages. Each page is landed with :func:`ods.upsert` and
the cursor advanced in the *same* warehouse transaction (pages are committed in groups of
about ``LAND_TXN_ROWS`` rows): ``ods_cursor`` keeps the plain
row-version high-water mark the rest of the pipeline reads, ``ods_cursor_state`` the full
:class:`CursorState` (unsettled fences included) as JSON. A crash between pages resumes
exactly where it stopped; a re-run with nothing new lands nothing.

``url:`` sources (the SQLite demo) are read with the plain :class:`TableReader`. No Dagster
here: orchestration calls :func:`extract_configured` / :func:`extract_sources_file`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from hisx.config import positive_int_env
from hisx.connectors.source.config import SourceConfig, SourceConfigError, load_sources
from hisx.connectors.source.extract import CursorState, ExtractStats, extract_parallel
from hisx.connectors.source.reader import TableReader
from hisx.connectors.warehouse import Warehouse
from hisx.pipelines import memory, ods, runlog
from hisx.pipelines.extract import ExtractResult, extract_table

log = logging.getLogger(__name__)

#: rows landed per warehouse transaction (pages of several jobs share one)
LAND_TXN_ROWS = 200_000
#: buffered rows of one table (pages of several centers) that are landed at once
LAND_TABLE_ROWS = 50_000

STATE_DDL = """
CREATE TABLE IF NOT EXISTS ods_cursor_state (
    source VARCHAR(100) NOT NULL,
    table_name VARCHAR(100) NOT NULL,
    tenant VARCHAR(40) NOT NULL,
    state_json VARCHAR(4000) NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (source, table_name, tenant)
)"""


@dataclass
class SourceExtractResult(ExtractResult):
    """An :class:`ExtractResult` plus how it was read (for asset metadata and run logs)."""

    path: str = ""
    used_primary: bool = False
    lag: float | None = None
    upper_bound: int | None = None
    reader_in_recovery: bool | None = None
    pages: int = 0
    longest_txn_s: float = 0.0
    reroutes: int = 0
    waited_s: float = 0.0
    pending_fences: int = 0
    skipped: list[str] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        """JSON-friendly, for Dagster ``MaterializeResult(metadata=...)`` or a log line."""
        return asdict(self)


def new_load_id() -> str:
    """Sortable, unique load id (same format as :func:`hisx.pipelines.flow.new_load_id`)."""
    return datetime.now().strftime("%Y%m%dT%H%M%S%f") + "-" + uuid.uuid4().hex[:8]


def ensure_state(wh: Warehouse) -> None:
    ods.ensure_ods(wh)
    runlog.ensure_runlog(wh)
    wh.execute(STATE_DDL)


def load_states(wh: Warehouse, source: str) -> dict[tuple[str, str], CursorState]:
    """The persisted cursor of every (table, tenant) of a source, in two queries;
    ``ods_cursor`` wins if the two disagree (e.g. a manual reset)."""
    rvs = wh.query_df("SELECT table_name, tenant, last_row_version FROM ods_cursor "
                      "WHERE source = :s", {"s": source})
    raw = wh.query_df("SELECT table_name, tenant, state_json FROM ods_cursor_state "
                      "WHERE source = :s", {"s": source})
    out: dict[tuple[str, str], CursorState] = {}
    cur = {(t, n): int(v) for t, n, v in zip(rvs["table_name"], rvs["tenant"],
                                             rvs["last_row_version"], strict=True)}
    for t, n, j in zip(raw["table_name"], raw["tenant"], raw["state_json"], strict=True):
        rv = cur.get((t, n), 0)
        state = CursorState.from_dict(json.loads(j))
        out[(t, n)] = state if state.rv == rv else CursorState(
            rv, [f for f in state.fences if f[0] > rv])
    for key, rv in cur.items():
        out.setdefault(key, CursorState(rv))
    return out


def save_states(wh: Warehouse, source: str, states: dict[tuple[str, str], CursorState]) -> None:
    """Both cursor rows of many (table, tenant)s, in a few statements; call inside the
    transaction that lands the rows they cover."""
    if not states:
        return
    now = datetime.now()
    keys = list(states)
    stage = pa.table({
        "table_name": pa.array([t for t, _ in keys], pa.string()),
        "tenant": pa.array([n for _, n in keys], pa.string()),
        "rv": pa.array([int(states[k].rv) for k in keys], pa.int64()),
        "state_json": pa.array([json.dumps(states[k].to_dict()) for k in keys], pa.string())})
    wh.execute("DROP TABLE IF EXISTS stage_cursor")
    wh.execute("CREATE TEMPORARY TABLE stage_cursor (table_name VARCHAR(100), tenant VARCHAR(40), "
               "rv BIGINT, state_json VARCHAR(4000))")
    wh.load_arrow("stage_cursor", stage)
    mine = "source = :s AND (table_name, tenant) IN (SELECT table_name, tenant FROM stage_cursor)"
    for table in ("ods_cursor", "ods_cursor_state"):
        wh.execute(f"DELETE FROM {table} WHERE {mine}", {"s": source})
    wh.execute("INSERT INTO ods_cursor SELECT :s, table_name, tenant, rv, :u FROM stage_cursor",
               {"s": source, "u": now})
    wh.execute("INSERT INTO ods_cursor_state SELECT :s, table_name, tenant, state_json, :u "
               "FROM stage_cursor", {"s": source, "u": now})
    wh.execute("DROP TABLE stage_cursor")


def _tables(cfg: SourceConfig, tables) -> list[str]:
    if tables is None:
        return list(cfg.tables)
    unknown = [t for t in tables if t not in cfg.tables]
    if unknown:
        raise SourceConfigError(f"source {cfg.name!r} does not declare tables {unknown}")
    return list(tables)


def _result(cfg: SourceConfig, table: str, tenant: str, load_id: str, before: int,
            state: CursorState, st: ExtractStats, read: int, changed: int) -> SourceExtractResult:
    return SourceExtractResult(
        load_id, cfg.name, table, tenant, read, changed, before, state.rv, st.endpoint,
        path=st.path, used_primary=st.used_primary, lag=st.lag, upper_bound=st.upper_bound,
        reader_in_recovery=st.reader_in_recovery, pages=st.chunks,
        longest_txn_s=round(st.longest_txn_s, 4), reroutes=st.reroutes,
        waited_s=round(st.waited_s, 3), pending_fences=len(state.fences),
        skipped=list(st.skipped))


def _extract_replicated(wh: Warehouse, cfg: SourceConfig, names: list[str],
                        load_id: str) -> list[SourceExtractResult]:
    """All (table, tenant) jobs through up to ``max_readers`` replica readers; landing stays
    in this thread: each page's rows and both its cursor rows in the same transaction."""
    jobs, keys, before = [], [], []
    saved = load_states(wh, cfg.name)
    for name in names:
        table = cfg.table(name)
        for tenant in cfg.tenants:
            state = saved.get((name, tenant.org_code), CursorState(0))
            jobs.append((table, tenant.org_code, state))
            keys.append((name, tenant.org_code))
            before.append(state.rv)
    read, changed = [0] * len(jobs), [0] * len(jobs)
    job_of = {k: i for i, k in enumerate(keys)}
    started = datetime.now()
    results: dict[int, SourceExtractResult] = {}
    # A source failure ends the loop after the pages already landed were committed: each
    # landed page carried its state. Fences a failed job took are not kept (the next run
    # re-takes). Pages are committed in groups of about LAND_TXN_ROWS rows: few, large
    # transactions (DuckDB writes their full row groups straight to the file, not the WAL).
    # Within a group the pages of one table, whatever their centers, land together (an
    # hour's few rows per center cost one upsert per table, not one per center and table),
    # and the finished jobs' log rows and every touched cursor are written just before the
    # group commits.
    pages: dict[str, list[pa.Table]] = {}
    states: dict[tuple[str, str], CursorState] = {}
    finished: list[tuple[int, CursorState, ExtractStats]] = []

    def land_table(name: str) -> None:
        batch = pa.concat_tables(pages.pop(name), promote_options="permissive")
        for tenant, n in ods.upsert_by_center(wh, name, batch, load_id).items():
            changed[job_of[(name, tenant)]] += n

    def land_group() -> None:
        for name in list(pages):
            land_table(name)
        logs = []
        for job, state, stats in finished:
            name, tenant = keys[job]
            res = _result(cfg, name, tenant, load_id, before[job], state, stats, read[job],
                          changed[job])
            results[job] = res
            if res.rows_read:
                logs.append({**_base(res), "started_at": started})
        runlog.log_extract_many(wh, logs)
        finished.clear()
        save_states(wh, cfg.name, states)
        states.clear()

    with contextlib.ExitStack() as txn:
        in_txn = 0
        for ev in extract_parallel(cfg, jobs):
            name, tenant = keys[ev.job]
            if not in_txn:
                txn.enter_context(wh.transaction())
            in_txn += 1
            if ev.page is not None:
                pages.setdefault(name, []).append(ev.page)
                read[ev.job] += ev.page.num_rows
                in_txn += ev.page.num_rows
                if sum(p.num_rows for p in pages[name]) >= LAND_TABLE_ROWS:
                    land_table(name)
            # the page's snapshot, or at the end the tail (bound passed, fences settled)
            states[(name, tenant)] = ev.state
            if ev.done:
                finished.append((ev.job, ev.state, ev.stats))
            if in_txn >= LAND_TXN_ROWS:
                land_group()
                txn.close()  # commit this group
                in_txn = 0
        land_group()  # the last group's (commits as the block ends)
    out = [results[i] for i in sorted(results)]
    if msg := pending_fences_message(cfg.name, out):
        log.warning(msg)
    return out


def pending_fences_message(source: str, results: list[SourceExtractResult]) -> str | None:
    """What to say loudly when reads stopped at an unsettled commit fence (None if none did):
    the rows above it are not lost, they arrive on a later run, but a run that looks complete
    is not. Extraction logs it as a warning; the Dagster asset shows it too."""
    held = [r for r in results if r.pending_fences]
    if not held:
        return None
    names = ", ".join(f"{r.table_name}/{r.tenant}" for r in held[:8])
    more = f" and {len(held) - 8} more" if len(held) > 8 else ""
    msg = (f"source {source}: {len(held)} read(s) stopped at an unsettled commit fence "
           f"({names}{more}); rows above it are read by a later run, once the standby's oldest "
           "snapshot passes it (a long transaction anywhere on the source cluster holds it back)")
    return msg


def _base(res: ExtractResult) -> dict:
    return {k: getattr(res, k) for k in ExtractResult.__dataclass_fields__}


def _extract_url_source(wh: Warehouse, cfg: SourceConfig, tables: list[str],
                        load_id: str) -> list[SourceExtractResult]:
    """A ``url:`` source (SQLite demo): no replicas, the plain TableReader path."""
    engine = sa.create_engine(cfg.url)
    out = []
    try:
        for name in tables:
            reader = TableReader(engine, cfg.table(name), chunk_rows=cfg.policies.chunk_rows,
                                 endpoint=cfg.name)
            upto = reader.high_water()
            for tenant in cfg.tenants:
                r = extract_table(reader, wh, source=cfg.name, tenant=tenant.org_code,
                                  load_id=load_id, upto=upto)
                out.append(SourceExtractResult(**_base(r), path="sqlalchemy", upper_bound=upto,
                                               pages=reader.stats.chunks))
    finally:
        engine.dispose()
    return out


def extract_configured(wh: Warehouse, source_cfg: SourceConfig, tables=None,
                       load_id: str | None = None, *, tenants=None) -> list[SourceExtractResult]:
    """Extract ``tables`` (default: the source's declared tables) for the configured tenants
    (or the org codes in ``tenants``, e.g. one Dagster partition) of one source into the ODS.
    Raises :class:`NoHealthyReplica` under the ``fail`` policy (or ``wait`` timing out)
    after keeping what was already landed."""
    if not source_cfg.tenants:
        raise SourceConfigError(f"source {source_cfg.name!r}: no tenants configured")
    if tenants is not None:
        known = {t.org_code for t in source_cfg.tenants}
        unknown = sorted(set(tenants) - known)
        if unknown:
            raise SourceConfigError(f"source {source_cfg.name!r} does not serve tenants {unknown}")
        source_cfg = replace(source_cfg, tenants=tuple(
            t for t in source_cfg.tenants if t.org_code in set(tenants)))
    names = _tables(source_cfg, tables)
    load_id = load_id or new_load_id()
    memory.use_lean_pool()
    ensure_state(wh)
    if source_cfg.url is None:
        source_cfg.require_secrets()
    with wh.working_threads(extract_threads()):
        if source_cfg.url is not None:
            return _extract_url_source(wh, source_cfg, names, load_id)
        return _extract_replicated(wh, source_cfg, names, load_id)


def extract_threads() -> int:
    """DuckDB's threads while extracting (``HISX_DUCKDB_EXTRACT_THREADS``, 1): the pages
    landed are a reader's few tens of thousands of rows, and the readers' own threads use
    the other core. The 31-center extraction phase took 21.2 / 20.7 / 21.0 s with one
    thread against 21.8 / 22.0 / 22.0 s with two (in turn)."""
    return positive_int_env("HISX_DUCKDB_EXTRACT_THREADS", 1)


def extract_sources_file(wh: Warehouse, sources: str | Path | dict, *, only: list[str] | None = None,
                         tables=None, tenants=None, load_id: str | None = None,
                         ) -> list[SourceExtractResult]:
    """Every source of a sources file (``Settings.sources_file``), one load id for the run."""
    cfgs = load_sources(sources)
    missing = sorted(set(only or []) - set(cfgs))
    if missing:
        raise SourceConfigError(f"sources file has no sources {missing}")
    load_id = load_id or new_load_id()
    out = []
    for name, cfg in cfgs.items():
        if only is None or name in only:
            serves = tenants is None or {t.org_code for t in cfg.tenants} & set(tenants)
            if serves:
                out += extract_configured(
                    wh, cfg, tables=tables, load_id=load_id,
                    tenants=None if tenants is None else
                    [t.org_code for t in cfg.tenants if t.org_code in set(tenants)])
    return out
