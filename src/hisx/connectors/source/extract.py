"""Lag-aware, commit-safe incremental extraction from a replicated source.

Routing: every page is read on a healthy readable replica; the primary only under the
``primary`` policy (recorded in the stats). Health and lag are checked before the run and
between pages.

Commit safety (the upper bound a run may read to):
* SQL Server: ``MIN_ACTIVE_ROWVERSION() - 1`` on the reader: every row version below the
  oldest active one is committed.
* PostgreSQL: row_version comes from a sequence (``CACHE 1``) through
  ``hisx_next_row_version()``, which assigns the transaction id *before* taking the number
  (``pg_current_xact_id()`` then ``nextval``; see :mod:`hisx.connectors.source.pgsetup`).
  A *fence* is ``(L, X)``: ``L`` = max(row_version) committed on the primary, then
  ``X`` = ``pg_snapshot_xmax(pg_current_snapshot())`` on the primary in a later statement.
  Any transaction that can still commit a row_version <= L took it before L was committed,
  so it had an xid < X. The fence is *settled* on a reader once the reader's snapshot xmin
  >= X: all of those transactions ended and, on a standby, their commits are replayed. The
  run reads up to the largest settled fence, so a long transaction holds the bound back
  instead of being skipped, and a lagging (or paused) standby never lets the cursor pass
  what it has replayed. Unsettled fences are kept in the cursor state for later runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import pyarrow as pa
import sqlalchemy as sa

from hisx.connectors.source.arrowtypes import table_schema
from hisx.connectors.source.config import Endpoint, SourceConfig, Tenant
from hisx.connectors.source.endpoints import (
    PG_PRIMARY_LSN_SQL,
    EndpointError,
    Health,
    OdbcEndpoint,
    mssql_health_from_row,
    mssql_health_select,
    parse_lsn,
)
from hisx.connectors.source.reader import ReadStats
from hisx.connectors.source.statements import dialect_for, page_sql, rv_expr

MAX_FENCES = 64
#: How long one run's readers reuse an endpoint's health probe when a job starts (between
#: pages a job always probes afresh).
HEALTH_REUSE_S = 1.0


class NoHealthyReplica(RuntimeError):
    """No readable replica is healthy and the policy is ``fail`` (or ``wait`` timed out)."""


@dataclass
class CursorState:
    """Per (table, tenant): everything <= ``rv`` is extracted; ``fences`` are unsettled
    PostgreSQL fences ``[L, X]`` (see module doc). JSON-serializable via ``to_dict``."""

    rv: int = 0
    fences: list[list[int]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> CursorState:
        d = d or {}
        return cls(int(d.get("rv", 0)), [list(map(int, f)) for f in d.get("fences", [])])


@dataclass
class ExtractStats(ReadStats):
    source: str = ""
    table: str = ""
    tenant: str | None = None
    used_primary: bool = False
    reader_in_recovery: bool | None = None
    lag: float | None = None  # of the chosen replica at routing: bytes (PG) / seconds (mssql)
    path: str = ""
    upper_bound: int | None = None
    cursor_before: int = 0
    cursor_after: int = 0
    reroutes: int = 0
    waited_s: float = 0.0
    skipped: list[str] = field(default_factory=list)

    def metadata(self) -> dict:
        return asdict(self)


def pg_fence_statements(table: sa.Table) -> tuple[sa.Select, str]:
    """(max committed row_version, snapshot xmax): run on the primary, in this order."""
    return (sa.select(sa.func.max(table.c.row_version)),
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")


PG_READER_XMIN_SQL = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"


def mssql_min_active_select() -> sa.Select:
    """Largest commit-safe row version on SQL Server: MIN_ACTIVE_ROWVERSION() - 1."""
    return sa.select(sa.cast(sa.func.MIN_ACTIVE_ROWVERSION(), sa.BigInteger) - 1)


def settled_bound(state: CursorState, reader_xmin: int) -> tuple[int, int]:
    """(largest settled fence L, its X), never below the cursor; drops settled fences."""
    bound, bound_x = state.rv, 0
    keep = []
    for lv, xmax in state.fences:
        if xmax <= reader_xmin:
            if lv > bound:
                bound, bound_x = lv, xmax
        else:
            keep.append([lv, xmax])
    state.fences = [f for f in keep if f[0] > bound][-MAX_FENCES:]
    return bound, bound_x


class RunProbes:
    """What the jobs of one run (:func:`extract_parallel`) would each ask the source alike,
    asked once and shared by its readers. An hour over 250 centers is ~3,250 one-page
    (table, tenant) jobs, and each asked six questions for its one page: the fence's two on
    the primary, the primary's WAL position and the replica's health, the replica's xmin.

    * A fence per table per run. A fence ``(L, X)`` is true whenever it was taken, so one
      taken at the table's first job bounds every center's job of the run alike: rows
      committed after it are read by the next run, as rows committed after a job's own
      fence were.
    * An endpoint's health, for :data:`HEALTH_REUSE_S` when a job starts.
    * An endpoint's snapshot xmin, re-read whenever it does not settle a job's newest fence
      (an xmin only grows, so an older one can only hold the bound lower, never higher).
    """

    def __init__(self, health_reuse_s: float | None = None) -> None:
        self.health_reuse_s = HEALTH_REUSE_S if health_reuse_s is None else health_reuse_s
        self._lock = threading.Lock()
        self.fences: dict[str, tuple[int | None, int] | None] = {}
        self._fence_locks: dict[str, threading.Lock] = {}
        self._health: dict[str, tuple[float, Health]] = {}
        self.xmin: dict[str, int] = {}

    def health(self, name: str, probe: Callable[[], Health]) -> Health:
        """A healthy probe of the last ``health_reuse_s``, else ``probe()`` (only a healthy
        answer is kept: an unhealthy endpoint is asked again by the next job)."""
        with self._lock:
            hit = self._health.get(name)
        if hit is not None and time.monotonic() - hit[0] < self.health_reuse_s:
            return hit[1]
        h = probe()
        if h.healthy:
            with self._lock:
                self._health[name] = (time.monotonic(), h)
        return h

    def fence(self, table: str, take: Callable[[], tuple[int | None, int] | None]
              ) -> tuple[int | None, int] | None:
        with self._lock:
            lock = self._fence_locks.setdefault(table, threading.Lock())
        with lock:  # the other readers wait for the table's one fence
            if table not in self.fences:
                self.fences[table] = take()
            return self.fences[table]


def resolve_path(cfg: SourceConfig, extraction_path: str | None = None) -> str:
    """arrow-odbc unless asked otherwise; pyodbc under ``auto`` when a char_encoding is set
    (arrow-odbc cannot decode GBK narrow text: pyodbc does)."""
    path = extraction_path or cfg.policies.extraction_path
    if path == "auto":
        path = "pyodbc" if cfg.char_encoding else "arrow-odbc"
    return path


@lru_cache(maxsize=256)
def _schema(table: sa.Table, dialect: str) -> pa.Schema:
    return table_schema(table, dialect_for(dialect))


class SourceExtractor:
    """Extracts tables of one configured source for one tenant at a time.

    ``extract`` yields Arrow tables (row_version on every row) and moves ``state.rv`` to the
    last row_version yielded *before* yielding, so a consumer that persists the state after
    landing each batch never loses or repeats a row, whatever fails in between."""

    def __init__(self, cfg: SourceConfig, *, sleep: Callable[[float], None] = time.sleep,
                 extraction_path: str | None = None, probes: RunProbes | None = None) -> None:
        if cfg.url is not None:
            raise ValueError("a url: source has no replicas: use TableReader on an engine")
        cfg.require_secrets()  # a clear error now, not a driver login failure later
        self.cfg = cfg
        self.policy = cfg.policies
        self.sleep = sleep
        self.primary = OdbcEndpoint(cfg.primary, cfg.dialect, char_encoding=cfg.char_encoding)
        self.replicas = [OdbcEndpoint(r, cfg.dialect, char_encoding=cfg.char_encoding)
                         for r in cfg.replicas]
        self.path = resolve_path(cfg, extraction_path)
        self._slots = threading.BoundedSemaphore(self.policy.max_readers)
        #: shared by the readers of one run (extract_parallel); None: every job asks afresh
        self.probes = probes
        self.last: ExtractStats | None = None
        self._bound_x = 0

    def close(self) -> None:
        for ep in (self.primary, *self.replicas):
            ep.close()

    # -- routing -----------------------------------------------------------------------------
    def _primary_lsn(self) -> int | None:
        try:
            return parse_lsn(self.primary.query(PG_PRIMARY_LSN_SQL)[0][0])
        except EndpointError:
            return None

    def health(self, ep: OdbcEndpoint) -> Health:
        lag = self.policy.max_lag
        if self.cfg.dialect == "postgresql":
            return ep.pg_health(self._primary_lsn(), lag)
        if self.cfg.dialect == "mssql":
            try:
                rows = ep.query(mssql_health_select())
                prim = self.primary.query(mssql_health_select())
            except EndpointError as e:
                return Health(ep.name, False, reason=str(e))
            p_commit = prim[0][6] if prim else None
            return mssql_health_from_row(ep.name, rows[0] if rows else None, p_commit, lag)
        raise ValueError(f"no replica health for dialect {self.cfg.dialect}")

    def route(self, stats: ExtractStats, reuse: bool = False) -> OdbcEndpoint:
        """A healthy replica, else per policy: wait (poll until timeout), primary, fail.
        ``reuse``: a healthy probe of this run's last :data:`HEALTH_REUSE_S` will do."""
        deadline = time.monotonic() + self.policy.wait_timeout_s
        while True:
            for ep in self.replicas:
                h = self._job_health(ep) if reuse else self.health(ep)
                if h.healthy:
                    stats.reader_in_recovery = h.in_recovery
                    stats.lag = h.lag
                    return ep
                stats.skipped.append(f"{ep.name}: {h.reason}")
            pol = self.policy.on_no_healthy_replica
            if pol == "primary":
                stats.used_primary = True
                stats.reader_in_recovery = False
                return self.primary
            if pol == "fail" or time.monotonic() >= deadline:
                raise NoHealthyReplica(
                    f"source {self.cfg.name!r}: no healthy replica ({'; '.join(stats.skipped[-3:])})"
                    + (" after waiting" if pol == "wait" else ""))
            t0 = time.monotonic()
            self.sleep(self.policy.wait_poll_s)
            stats.waited_s += time.monotonic() - t0

    def _job_health(self, ep: OdbcEndpoint) -> Health:
        """A job's first probe: this run's recent healthy one when there is (RunProbes)."""
        if self.probes is None:
            return self.health(ep)
        return self.probes.health(ep.name, lambda: self.health(ep))

    # -- bounds ------------------------------------------------------------------------------
    def _fence(self, table: sa.Table) -> tuple[int | None, int] | None:
        hw_stmt, xmax_sql = pg_fence_statements(table)
        try:
            (hw,) = self.primary.query(hw_stmt)[0]
            (xmax,) = self.primary.query(xmax_sql)[0]
        except EndpointError:
            return None
        return (None if hw is None else int(hw)), int(xmax)

    def take_fence(self, table: sa.Table, state: CursorState) -> None:
        """PG: add (L, X) from the primary (once per table in a run with RunProbes);
        skipped (no progress, still safe) if unreachable."""
        if self.cfg.dialect != "postgresql":
            return
        f = (self._fence(table) if self.probes is None
             else self.probes.fence(table.name, lambda: self._fence(table)))
        if f is not None and f[0] is not None and f[0] > state.rv:
            state.fences.append([f[0], f[1]])

    def _reader_xmin(self, ep: OdbcEndpoint, state: CursorState) -> int:
        """The reader's snapshot xmin; this run's last one while it settles every fence."""
        if self.probes is not None:
            known = self.probes.xmin.get(ep.name)
            if known is not None and all(x <= known for _, x in state.fences):
                return known
        (xmin,) = ep.query(PG_READER_XMIN_SQL)[0]
        if self.probes is not None:
            self.probes.xmin[ep.name] = max(int(xmin), self.probes.xmin.get(ep.name, 0))
        return int(xmin)

    def upper_bound(self, ep: OdbcEndpoint, state: CursorState) -> int:
        if self.cfg.dialect == "postgresql":
            bound, self._bound_x = settled_bound(state, self._reader_xmin(ep, state))
            return bound
        (v,) = ep.query(mssql_min_active_select())[0]
        return max(state.rv, int(v))

    # -- extraction --------------------------------------------------------------------------
    def extract(self, table_name: str | sa.Table, tenant: Tenant | str | None,
                state: CursorState) -> Iterator[pa.Table]:
        table = table_name if isinstance(table_name, sa.Table) else self.cfg.table(table_name)
        org = tenant.org_code if isinstance(tenant, Tenant) else tenant
        schema = _schema(table, self.cfg.dialect)
        stats = ExtractStats(source=self.cfg.name, table=table.name, tenant=org, path=self.path,
                             cursor_before=state.rv, cursor_after=state.rv)
        self.last = stats
        self.take_fence(table, state)
        ep = self.route(stats, reuse=True)
        stats.endpoint = ep.name
        upto = self.upper_bound(ep, state)
        stats.upper_bound = upto
        chunk = self.policy.chunk_rows
        while state.rv < upto:
            sql, params = page_sql(table, self.cfg.dialect, org, state.rv, upto, chunk)
            t0 = time.perf_counter()
            try:
                with self._slots:
                    page = ep.fetch_page(sql, params, schema, self.path)
            except EndpointError as e:
                stats.skipped.append(f"{ep.name}: {e}")
                ep, upto = self._reroute(stats, state, upto)
                continue
            stats.add_page(page, time.perf_counter() - t0)
            if page.num_rows == 0:
                break
            state.rv = int(page.column("row_version")[-1].as_py())
            stats.cursor_after = state.rv
            yield page
            if page.num_rows < chunk:
                break
            h = self.health(ep) if ep is not self.primary else Health(ep.name, True)
            if not h.healthy:  # between pages: lagging or gone -> re-route per policy
                stats.skipped.append(f"{ep.name}: {h.reason}")
                ep, upto = self._reroute(stats, state, upto)
        # Everything <= upto is settled and read: an empty tail is safe to skip over.
        state.rv = max(state.rv, upto)
        stats.cursor_after = state.rv

    def _reroute(self, stats: ExtractStats, state: CursorState, upto: int) -> tuple[OdbcEndpoint, int]:
        stats.reroutes += 1
        ep = self.route(stats)
        stats.endpoint = ep.name if stats.endpoint == ep.name else f"{stats.endpoint},{ep.name}"
        if self.cfg.dialect == "postgresql":
            # The bound was settled on the old reader: keep only what the new one also has.
            # If the new reader has not replayed it, stop here; the next run resumes.
            (xmin,) = ep.query(PG_READER_XMIN_SQL)[0]
            if int(xmin) < self._bound_x:
                upto = state.rv
        return ep, upto


@dataclass
class JobEvent:
    """One step of :func:`extract_parallel`: a page of job ``job`` (``page`` set), or the
    job's end (``done``, with its final stats). ``state`` is a snapshot taken while the
    producing generator was suspended: persisting it with the page never runs ahead."""

    job: int
    page: pa.Table | None
    state: CursorState
    stats: ExtractStats | None = None
    done: bool = False


def _snapshot(state: CursorState) -> CursorState:
    return CursorState(state.rv, [list(f) for f in state.fences])


def extract_parallel(cfg: SourceConfig, jobs: list[tuple[str | sa.Table, Tenant | str | None, CursorState]],
                     *, max_readers: int | None = None, extraction_path: str | None = None,
                     ) -> Iterator[JobEvent]:
    """Read several (table, tenant, state) jobs with up to ``max_readers`` threads, each with
    its own :class:`SourceExtractor` (own sessions, own routing). Events arrive as pages are
    read; each job's own events stay in order. The hand-over queue holds at most
    ``max_readers`` pages, so memory is bounded by about 2 x max_readers pages whatever the
    table size. The pyodbc path always reads with one reader. A reader's exception is re-raised here after the pages already yielded; the
    other readers stop at their next page. ``max_readers=1`` reads in the calling thread.
    The readers share one :class:`RunProbes`: a fence per table, health and xmin asked once
    for the run's jobs rather than by each."""
    import queue

    n = min(max_readers or cfg.policies.max_readers, len(jobs)) or 1
    if resolve_path(cfg, extraction_path) == "pyodbc":
        # pyodbc pages become Arrow in Python, under the GIL: a second reader thread gained
        # nothing and stretched each page's source transaction (bench_extract: 0.9 s with
        # one reader, 2.1-2.5 s with two), so pyodbc reads with one.
        n = 1
    probes = RunProbes()
    if n == 1:
        ex = SourceExtractor(cfg, extraction_path=extraction_path, probes=probes)
        try:
            for i, (table, tenant, state) in enumerate(jobs):
                for page in ex.extract(table, tenant, state):
                    yield JobEvent(i, page, _snapshot(state))
                yield JobEvent(i, None, _snapshot(state), ex.last, True)
        finally:
            ex.close()
        return

    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in range(len(jobs)):
        todo.put(i)
    out: queue.Queue = queue.Queue(maxsize=n)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def reader() -> None:
        ex = None
        try:
            ex = SourceExtractor(cfg, extraction_path=extraction_path, probes=probes)
            while not stop.is_set():
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    break
                table, tenant, state = jobs[i]
                for page in ex.extract(table, tenant, state):
                    if not put(JobEvent(i, page, _snapshot(state))):
                        return
                if not put(JobEvent(i, None, _snapshot(state), ex.last, True)):
                    return
        except BaseException as e:  # handed to the consumer, raised there
            put(e)
        finally:
            if ex is not None:
                ex.close()
            put(None)

    threads = [threading.Thread(target=reader, name=f"hisx-reader-{k}", daemon=True)
               for k in range(n)]
    for t in threads:
        t.start()
    running = n
    try:
        while running:
            item = out.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)


def endpoint_from_odbc(name: str, odbc: str, role: str = "replica") -> Endpoint:
    return Endpoint(name=name, odbc=odbc, role=role)


__all__ = ["CursorState", "ExtractStats", "JobEvent", "NoHealthyReplica", "RunProbes",
           "SourceExtractor",
           "extract_parallel",
           "mssql_min_active_select", "pg_fence_statements", "rv_expr", "settled_bound"]
