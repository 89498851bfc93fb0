"""The pipeline steps as plain functions (no Dagster): extract → standardize → marts.

Orchestration wraps these; the CLI and tests call them directly. Every step is incremental
and idempotent: extraction follows the ODS cursor, standardization the extraction loads not
yet standardized, marts the business days made dirty by standardization.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from hisx.connectors.source import TableReader
from hisx.connectors.warehouse import Warehouse
from hisx.marts import runner as marts
from hisx.pipelines import feeds, ods, runlog
from hisx.pipelines.extract import ExtractResult, extract_table
from hisx.pipelines.std_tables import ensure_std, std_columns, std_table
from hisx.simulator.schema import TABLES

DIRTY_DDL = """CREATE TABLE IF NOT EXISTS mart_dirty (
    dataset VARCHAR(60) NOT NULL, tenant VARCHAR(40) NOT NULL, business_date DATE NOT NULL)"""


@dataclass(frozen=True)
class Tenant:
    org_code: str
    vendor: str
    name: str = ""


@dataclass
class StdStats:
    dataset: str
    tenant: str
    rows_in: int = 0
    standardized: int = 0
    quarantined: int = 0
    deduplicated: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    map_version: str | None = None
    rv_from: int | None = None  # row-version range of the extraction loads consumed
    rv_to: int | None = None
    endpoint: str = ""  # where those loads were read (replica / URL)

    @property
    def conserved(self) -> bool:
        return self.rows_in == self.standardized + self.quarantined + self.deduplicated

    def add(self, other: StdStats) -> None:
        """Fold one chunk's figures into the tenant's."""
        self.rows_in += other.rows_in
        self.standardized += other.standardized
        self.quarantined += other.quarantined
        self.deduplicated += other.deduplicated
        for k, v in other.reasons.items():
            self.reasons[k] = self.reasons.get(k, 0) + v
        self.map_version = other.map_version or self.map_version
        self.rv_from, self.rv_to = other.rv_from, other.rv_to
        self.endpoint = other.endpoint or self.endpoint


def new_load_id() -> str:
    """Sortable, unique load id: UTC timestamp + random suffix."""
    return datetime.now().strftime("%Y%m%dT%H%M%S%f") + "-" + uuid.uuid4().hex[:8]


def ensure_warehouse(wh: Warehouse) -> None:
    ods.ensure_ods(wh)
    runlog.ensure_runlog(wh)
    wh.execute(DIRTY_DDL)
    wh.execute(PERSON_KEY_CACHE_DDL)
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
def _loads_filter(load_ids: list[str]) -> tuple[str, dict[str, str]]:
    names = {f"l{i}": lid for i, lid in enumerate(load_ids)}
    return f"_load_id IN ({', '.join(f':{k}' for k in names)})", names


def _ods_rows(wh: Warehouse, table: str, tenant: str, load_ids: list[str],
              keys: tuple[int, int] | None = None) -> pd.DataFrame:
    """The tenant's ODS rows landed by ``load_ids`` (within the inclusive key range ``keys``)."""
    cond, names = _loads_filter(load_ids)
    params: dict = {"tenant": tenant, **names}
    if keys is not None:
        pk = ods.primary_key(ods.SOURCE_TABLES[table])
        cond += f' AND "{pk}" BETWEEN :klo AND :khi'
        params.update(klo=keys[0], khi=keys[1])
    df = wh.query_df(
        f"SELECT * FROM {ods.ods_name(table)} WHERE org_code = :tenant AND {cond}", params)
    return df.drop(columns=["_load_id", "_loaded_at"])


def std_chunk_rows() -> int:
    """Rows per standardization batch (``HISX_STD_CHUNK_ROWS``): bounds the memory one
    center's backlog takes, however long it is."""
    raw = os.environ.get("HISX_STD_CHUNK_ROWS", "150000")
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"HISX_STD_CHUNK_ROWS must be a positive integer, not {raw!r}")
    return int(raw)


def _key_chunks(wh: Warehouse, table: str, tenant: str, load_ids: list[str],
                size: int) -> list[tuple[int, int, int]]:
    """Inclusive primary-key ranges of at most ``size`` pending rows each, in key order (so a
    natural-key duplicate meets its lower-keyed original in the same or an earlier chunk),
    as ``(lo, hi, rows)``."""
    pk = ods.primary_key(ods.SOURCE_TABLES[table])
    cond, names = _loads_filter(load_ids)
    keys = wh.query_arrow(
        f'SELECT "{pk}" AS k FROM {ods.ods_name(table)} WHERE org_code = :tenant AND {cond} '
        "ORDER BY 1", {"tenant": tenant, **names}).column("k").to_numpy()
    return [(int(keys[i]), int(keys[min(i + size, len(keys)) - 1]), min(size, len(keys) - i))
            for i in range(0, len(keys), size)]


def _txn_groups(units: list[tuple], size: int) -> list[list[tuple]]:
    """Consecutive chunks (of any tenants) whose rows add up to at most ``size``: written in
    one transaction. Few, large commits: DuckDB writes a transaction's full row groups
    straight to the file instead of to the WAL, and an hour's changes of many centers cost
    one commit per dataset instead of one per center."""
    groups: list[list[tuple]] = []
    rows = 0
    for u in units:
        if not groups or rows + u[3] > size:
            groups.append([])
            rows = 0
        groups[-1].append(u)
        rows += u[3]
    return groups


PERSON_KEY_CACHE_DDL = """CREATE TABLE IF NOT EXISTS person_key_cache (
    tenant VARCHAR(40) NOT NULL, patient_id BIGINT NOT NULL, row_version BIGINT NOT NULL,
    key_id VARCHAR(64) NOT NULL, person_key VARCHAR(64) NOT NULL)"""


def person_keys(wh: Warehouse, tenant: str, patient_ids: Iterable[int]) -> pd.DataFrame:
    """Pseudonymous person keys for patients, computed from the ODS patient rows.

    A key is an HMAC of the patient's identifying fields: computed once per (patient, source
    row version, key id) and kept in ``person_key_cache``, so the datasets that name the same
    patients, and later runs, look it up instead of hashing again. A new row version (the
    patient's data changed) or a rotated key (new key id) recomputes it.
    """
    from hisx.standards import pseudonym

    ids = sorted({int(x) for x in patient_ids if pd.notna(x)})
    cols = ["tenant", "patient_id", "person_key"]
    if not ids:
        return pd.DataFrame(columns=cols)
    key = pseudonym.key_from_env()
    stage = pa.table({"patient_id": pa.array(ids, pa.int64())})
    with wh.transaction():
        wh.execute(PERSON_KEY_CACHE_DDL)
        wh.execute("DROP TABLE IF EXISTS stage_pids")
        wh.execute("CREATE TEMPORARY TABLE stage_pids (patient_id BIGINT)")
        wh.load_arrow("stage_pids", stage)
        p = wh.query_df(
            "SELECT p.patient_id, p.row_version, c.person_key, "
            "CASE WHEN c.person_key IS NULL THEN p.id_no END AS id_no, "
            "CASE WHEN c.person_key IS NULL THEN p.name END AS name, "
            "p.birth_date, p.gender "
            "FROM ods_patients p JOIN stage_pids s ON s.patient_id = p.patient_id "
            "LEFT JOIN person_key_cache c ON c.tenant = p.org_code AND "
            "c.patient_id = p.patient_id AND c.row_version = p.row_version AND c.key_id = :kid "
            "WHERE p.org_code = :tenant",
            {"tenant": tenant, "kid": key.key_id},
        )
        wh.execute("DROP TABLE stage_pids")
        miss = p["person_key"].isna()
        if miss.any():
            m = p[miss]
            computed = pseudonym.person_keys(key, m["id_no"], m["name"], m["birth_date"],
                                             m["gender"])
            p.loc[miss, "person_key"] = computed
            _cache_person_keys(wh, tenant, pd.DataFrame({
                "source_key": m["patient_id"], "row_version": m["row_version"],
                "key_id": key.key_id, "person_key": computed}))
    p["tenant"] = tenant
    return p[cols]


def _cache_person_keys(wh: Warehouse, tenant: str, std: pd.DataFrame) -> None:
    """The person keys the ``person`` dataset just computed, for the datasets that follow."""
    if not len(std) or not {"source_key", "row_version", "key_id", "person_key"} <= set(std):
        return
    fresh = pa.table({
        "tenant": pa.array([tenant] * len(std), pa.string()),
        "patient_id": pa.array(std["source_key"].astype("int64"), pa.int64()),
        "row_version": pa.array(std["row_version"].astype("int64"), pa.int64()),
        "key_id": pa.array(std["key_id"].astype(str), pa.string()),
        "person_key": pa.array(std["person_key"].astype(str), pa.string())})
    wh.execute(PERSON_KEY_CACHE_DDL)
    wh.execute("DROP TABLE IF EXISTS stage_pk_fresh")
    wh.execute("CREATE TEMPORARY TABLE stage_pk_fresh (tenant VARCHAR(40), patient_id BIGINT, "
               "row_version BIGINT, key_id VARCHAR(64), person_key VARCHAR(64))")
    wh.load_arrow("stage_pk_fresh", fresh)
    wh.execute("DELETE FROM person_key_cache WHERE tenant = :t AND patient_id IN "
               "(SELECT patient_id FROM stage_pk_fresh)", {"t": tenant})
    wh.execute("INSERT INTO person_key_cache SELECT tenant, patient_id, row_version, key_id, "
               "person_key FROM stage_pk_fresh")
    wh.execute("DROP TABLE stage_pk_fresh")


def _mark_dirty(wh: Warehouse, dataset: str, tenant: str, dates: Iterable[object]) -> None:
    """Record the business days whose marts must be re-loaded (only if a mart reads them)."""
    if not any(dataset in deps for deps in marts.MART_DEPS.values()):
        return
    ts = pd.to_datetime(pd.Series(dates), errors="coerce").dropna()
    days = pd.Series(ts.dt.normalize().unique()).sort_values()
    if len(days):
        n = len(days)
        wh.load_arrow("mart_dirty", pa.table({
            "dataset": [dataset] * n, "tenant": [tenant] * n,
            "business_date": pa.array(days.dt.date.tolist(), pa.date32())}))


def _to_arrow(df: pd.DataFrame, columns: list[str]) -> pa.Table:
    for c in columns:
        if c not in df.columns:
            df[c] = None
    return pa.Table.from_pandas(df[columns], preserve_index=False)


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

    Each chunk is read from ODS and standardized with its feed-ledger rows (pure functions,
    see :func:`_compute`); consecutive chunks of up to ``HISX_STD_CHUNK_ROWS`` rows in all,
    whatever their tenants, are written in one transaction (see :func:`_txn_groups`). A
    process pool per tenant was measured slower than this on the 2-core machine (pickling the
    batches costs more than it saves).
    """
    from hisx.pipelines.standardize import DATASETS
    from hisx.standards.datasets import load_schema

    spec = DATASETS[dataset]
    schema = load_schema(dataset)
    ensure_std(wh, dataset, schema)
    now = now or datetime.now()
    load_id = load_id or new_load_id()
    size = std_chunk_rows()
    tenants = list(tenants)
    totals = {t.org_code: StdStats(dataset, t.org_code) for t in tenants}
    units: list[tuple] = []  # (tenant, loads, key range, rows, loads done after this chunk)
    for tenant in tenants:
        loads = runlog.pending_loads(wh, spec.name, spec.source_table, tenant.org_code)
        chunks = _key_chunks(wh, spec.source_table, tenant.org_code, loads, size) if loads else []
        for i, (lo, hi, n) in enumerate(chunks):
            # the loads count as standardized once their last chunk is written
            units.append((tenant, loads, (lo, hi), n, loads if i == len(chunks) - 1 else []))
        if loads and not chunks:  # loads whose rows were all superseded: nothing left to read
            with wh.transaction():
                runlog.mark_done(wh, dataset, tenant.org_code, loads)
    groups = _txn_groups(units, size)
    if len(groups) > 1 and std_overlap():
        _run_overlapped(wh, spec, schema, groups, now, load_id, totals)
    else:
        for group in groups:
            # a later chunk reads (dedup, person keys) what an earlier one of the group wrote:
            # the transaction sees its own writes
            with wh.transaction():
                for tenant, loads, keys, _n, done in group:
                    job = _prepare(wh, spec, tenant, now, load_id, loads, keys)
                    job["done"] = done
                    totals[tenant.org_code].add(_finish(wh, spec, schema, job,
                                                        _compute(job["args"])))
    return list(totals.values())


def std_overlap() -> bool:
    """Whether a dataset's groups are written by a second thread while the next group is
    read and standardized (``HISX_STD_OVERLAP=1``; default off: on 2 cores it gained
    nothing measurable, the GIL is shared, and two groups in memory took 1.9 GB against 1.2)."""
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
    from concurrent.futures import Future, ThreadPoolExecutor

    def write(jobs: list[tuple[dict, Any]]) -> list[StdStats]:
        with wh.transaction():
            return [_finish(wh, spec, schema, job, computed) for job, computed in jobs]

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
                jobs = []
                for tenant, loads, keys, _n, done in group:
                    job = _prepare(rd, spec, tenant, now, load_id, loads, keys)
                    job["done"] = done
                    jobs.append((job, _compute(job["args"])))
                if inflight is not None:
                    collect(inflight)
                inflight, inflight_tenants = pool.submit(write, jobs), names
            if inflight is not None:
                collect(inflight)
                inflight = None
        finally:
            if inflight is not None:  # an error here: let the write end before re-raising
                inflight.exception()


def _existing_keys(wh: Warehouse, spec, tenant: str, df: pd.DataFrame) -> pd.DataFrame | None:
    """Natural keys already standardized near the batch's business days (cross-batch dedup).

    Duplicate submissions arrive within seconds of the original, so the lookup is limited to
    the batch's business days ± 1 instead of the whole table.
    """
    from hisx.pipelines.standardize import _STD_NK_NAMES, existing_keys_from_std

    if all(c in ("org_code", spec.pk) for c in spec.natural_key):
        return None  # the natural key is the primary key: nothing beyond PK dedup
    nk = [_STD_NK_NAMES.get(c, c) for c in spec.natural_key if c != "org_code"]
    times = pd.to_datetime(df[spec.business_time], errors="coerce").dropna()
    if not nk or times.empty:
        return None
    lo, hi = times.min().date() - timedelta(days=1), times.max().date() + timedelta(days=1)
    cols = ", ".join(f'"{c}"' for c in nk)
    std = wh.query_df(
        f"SELECT source_key, {cols} FROM {std_table(spec.name)} WHERE tenant = :t "
        "AND business_date BETWEEN :a AND :b", {"t": tenant, "a": lo, "b": hi})
    return existing_keys_from_std(spec.name, std) if len(std) else None


def _prepare(wh: Warehouse, spec, tenant: Tenant, now: datetime, load_id: str,
             loads: list[str], keys: tuple[int, int]) -> dict:
    from hisx.pipelines.standardize import NEEDS_PERSON_KEYS

    df = _ods_rows(wh, spec.source_table, tenant.org_code, loads, keys)
    pkeys = (person_keys(wh, tenant.org_code, df["patient_id"])
             if spec.name in NEEDS_PERSON_KEYS else None)
    existing = _existing_keys(wh, spec, tenant.org_code, df)
    args = dict(dataset=spec.name, df=df, tenant=tenant.org_code, vendor=tenant.vendor,
                load_id=load_id, now=now, person_keys=pkeys, existing_keys=existing)
    return {"tenant": tenant.org_code, "loads": loads, "load_id": load_id, "df": df,
            "args": args}


def _compute(args: dict):
    """Worker side: standardize one batch and build its feed-ledger rows (pure)."""
    from hisx.pipelines.standardize import standardize

    a = dict(args)
    dataset = a.pop("dataset")
    res = standardize(dataset, a.pop("df"), **a)
    ledger = (feeds.build_ledger_rows(dataset, args["tenant"], res.standardized,
                                      args["load_id"]) if len(res.standardized) else None)
    return res, ledger


def _finish(wh: Warehouse, spec, schema, job: dict, computed) -> StdStats:
    res, ledger = computed
    df = job["df"]
    stats = StdStats(spec.name, job["tenant"], rows_in=len(df),
                     standardized=len(res.standardized), quarantined=len(res.quarantined),
                     deduplicated=int(res.deduplicated))
    for reasons in res.quarantined.get("reasons", []):
        for r in reasons:
            kind = ":".join(str(r).split(":")[:2])
            stats.reasons[kind] = stats.reasons.get(kind, 0) + 1
    if not stats.conserved:
        raise RuntimeError(f"conservation violated for {spec.name}/{job['tenant']}: {stats}")
    stats.map_version = _map_version(res.standardized)
    _load_range(wh, spec.source_table, job["tenant"], job["loads"], stats)
    pk = spec.pk
    _write_std(wh, spec, job["tenant"], pk, df, res, schema, job["load_id"], job["done"],
               stats, ledger)
    return stats


def _load_range(wh: Warehouse, table: str, tenant: str, loads: list[str], stats: StdStats) -> None:
    """Row-version range and endpoint of the extraction loads a batch consumed (load_log)."""
    names = {f"l{i}": lid for i, lid in enumerate(loads)}
    marks = ", ".join(f":{k}" for k in names)
    df = wh.query_df(
        f"SELECT min(rv_from) AS a, max(rv_to) AS b, max(endpoint) AS e FROM load_log "
        f"WHERE table_name = :t AND tenant = :n AND load_id IN ({marks})",
        {"t": table, "n": tenant, **names})
    if len(df) and pd.notna(df["b"].iloc[0]):
        stats.rv_from, stats.rv_to = int(df["a"].iloc[0]), int(df["b"].iloc[0])
        stats.endpoint = str(df["e"].iloc[0] or "")


def _write_std(wh, spec, tenant, pk, df, res, schema, load_id, loads, stats, ledger) -> None:
    dataset = spec.name
    std = std_table(dataset)
    keys = pa.table({"source_key": pa.array(df[pk].astype("int64").tolist(), pa.int64())})
    # the batch's key range: DuckDB skips the std row groups that cannot hold these keys
    rng = {"t": tenant, "lo": pc.min(keys["source_key"]).as_py(),
           "hi": pc.max(keys["source_key"]).as_py()}
    q = res.quarantined.copy()
    if len(q):
        q["reasons"] = q["reasons"].map(lambda rs: json.dumps(list(rs), ensure_ascii=False))
        q["quarantined_at"] = datetime.now()
        q["load_id"] = load_id
    qcols = ["dataset", "tenant", "source_table", "source_key", "row_version", "reasons",
             "original", "load_id", "quarantined_at"]
    with wh.transaction():
        wh.execute("DROP TABLE IF EXISTS stage_keys")
        wh.execute("CREATE TEMPORARY TABLE stage_keys (source_key BIGINT)")
        wh.load_arrow("stage_keys", keys)
        in_batch = ("tenant = :t AND source_key BETWEEN :lo AND :hi AND source_key IN "
                    "(SELECT source_key FROM stage_keys)")
        old_dates = wh.query_df(f"SELECT DISTINCT business_date FROM {std} WHERE {in_batch}", rng)
        wh.execute(f"DELETE FROM {std} WHERE {in_batch}", rng)
        wh.execute("DELETE FROM quarantine WHERE dataset = :d AND tenant = :t AND source_key IN "
                   "(SELECT source_key FROM stage_keys)", {"d": dataset, "t": tenant})
        wh.load_arrow(std, _to_arrow(res.standardized.copy(), std_columns(schema)))
        if len(q):
            wh.load_arrow("quarantine", _to_arrow(q, qcols))
        wh.execute("DROP TABLE stage_keys")
        if dataset == "person":
            _cache_person_keys(wh, tenant, res.standardized)
        # the feed outbox is written in the same transaction as the rows it describes
        feeds.enqueue(wh, dataset, tenant, res.standardized, load_id, rows=ledger)
        # days of the old versions, the new ones, and the quarantined rows (for DQ marts)
        _mark_dirty(wh, dataset, tenant, pd.concat([
            pd.to_datetime(old_dates["business_date"], errors="coerce"),
            pd.to_datetime(df[spec.business_time], errors="coerce")], ignore_index=True))
        runlog.log_std(wh, load_id=load_id, dataset=dataset, tenant=tenant,
                       rows_in=stats.rows_in, standardized=stats.standardized,
                       quarantined=stats.quarantined, deduplicated=stats.deduplicated,
                       map_version=_map_version(res.standardized))
        runlog.mark_done(wh, dataset, tenant, loads)  # [] until the loads' last chunk


def _map_version(std: pd.DataFrame) -> str | None:
    if "map_version" in std and len(std):
        return str(std["map_version"].iloc[0])
    return None


# -- marts -------------------------------------------------------------------------------------
def _ranges(days: list[date], max_ranges: int = 8) -> list[tuple[date, date]]:
    """Cover ``days`` with at most ``max_ranges`` inclusive day ranges.

    Adjacent days join; beyond ``max_ranges`` the ranges separated by the smallest gaps are
    merged, so a scattered backlog (e.g. patients created over years) costs a few set-based
    statements, while a late day alone re-loads just that day.
    """
    return _merge_ranges([(d, d) for d in days], max_ranges=max_ranges)


def _merge_ranges(ranges: list[tuple[date, date]], *, full: bool = False,
                  max_ranges: int = 8) -> list[tuple[date, date]]:
    """The union of inclusive day ranges as at most ``max_ranges`` ranges (the smallest gaps
    closed first); one covering range when ``full``."""
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


def build_marts(wh: Warehouse, marts_: tuple[str, ...] = marts.MARTS, *,
                tenants: Iterable[str] | None = None, day_from: date | None = None,
                day_to: date | None = None) -> dict[str, list]:
    """Re-load each mart for the business days its datasets made dirty, then clear them.

    ``tenants`` / ``day_from`` / ``day_to`` limit the work to one partition (center × month);
    dirty days outside it stay for their own partition. Returns the reloaded (first, last)
    day ranges per tenant.
    """
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
    dirty = wh.query_df(f"SELECT DISTINCT dataset, tenant, business_date FROM mart_dirty{cond}",
                        params)
    done: dict[str, list] = {}
    groups = {str(t): g for t, g in dirty.groupby("tenant")}
    for name in marts_:
        # tenants that need the same range load together (one set-based statement per range
        # for the tenant-separable marts: a city backfill is one range for every center)
        by_range: dict[tuple[date, date], list[str]] = {}
        per_tenant: dict[str, list[tuple[date, date]]] = {}
        for tenant, grp in groups.items():
            # a mart that reads no std dataset (dim_date, the load-log DQ) follows every one
            deps = set(marts.MART_DEPS.get(name, ())) or set(grp["dataset"])
            days = [pd.Timestamp(d).date() for d in grp.loc[grp["dataset"].isin(deps),
                                                               "business_date"]]
            ranges = _ranges(days)
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
        for (lo, hi), tenants_ in by_range.items():
            marts.load_mart_many(wh, name, tenants_, lo, hi)
    for tenant, grp in groups.items():
        with wh.transaction():
            for ds, sub in grp.groupby("dataset"):
                for lo, hi in _ranges([pd.Timestamp(d).date() for d in sub["business_date"]]):
                    wh.execute("DELETE FROM mart_dirty WHERE dataset = :d AND tenant = :t AND "
                               "business_date BETWEEN :a AND :b",
                               {"d": ds, "t": tenant, "a": lo, "b": hi})
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
