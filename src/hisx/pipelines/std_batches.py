"""Standardization batches: read a transaction group's ODS rows, standardize, write.

A group (see ``flow._txn_groups``) holds key-ordered chunks of any centers. Its rows are read
and standardized as one batch per set of centers that share their maps (``maps_group``), and
written in one pass: an hour's few rows of every center cost one read, one standardization
and one write per dataset instead of one per center, while every figure (conservation, the
std log, the done loads) stays per center.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from hisx.connectors.warehouse import Warehouse, execute_ddl, in_list
from hisx.marts import runner as marts
from hisx.pipelines import feed_render, feeds, ods, runlog
from hisx.pipelines.std_stats import StdStats, Tenant
from hisx.pipelines.std_tables import ARRIVAL, std_columns, std_table

#: one chunk of a center's backlog: (center, its pending loads, inclusive key range, rows,
#: the loads that count as standardized once this chunk is written)
Unit = tuple[Tenant, list[str], tuple[int, int], int, list[str]]

PERSON_KEY_CACHE_DDL = """CREATE TABLE IF NOT EXISTS person_key_cache (
    tenant VARCHAR(40) NOT NULL, patient_id BIGINT NOT NULL, row_version BIGINT NOT NULL,
    key_id VARCHAR(64) NOT NULL, person_key VARCHAR(64) NOT NULL)"""


def ensure_person_key_cache(wh: Warehouse) -> None:
    """The person-key cache; on PostgreSQL with a B-tree on (tenant, patient_id), which each
    batch's lookup and replacement would otherwise answer by scanning the city's cache."""
    execute_ddl(wh, [PERSON_KEY_CACHE_DDL] + (
        ["CREATE INDEX IF NOT EXISTS ix_person_key_cache_pid ON person_key_cache "
         "(tenant, patient_id)"] if wh.dialect == "postgresql" else []))


# -- read ------------------------------------------------------------------------------------
def pending_filter(pk: str, parts: list[tuple[str, list[str], tuple[int, int] | None]]
                   ) -> tuple[str, dict[str, Any]]:
    """WHERE clause (and bound values) for the ODS rows of each (center, loads, inclusive key
    range or None), OR-ed together; each load id is bound once however many centers name it."""
    load_names = {lid: f"l{i}" for i, lid in enumerate(sorted({x for _, ls, _ in parts
                                                                for x in ls}))}
    conds, params = [], {v: k for k, v in load_names.items()}
    for i, (tenant, loads, keys) in enumerate(parts):
        marks = ", ".join(":" + load_names[x] for x in loads)
        cond = f"org_code = :t{i} AND _load_id IN ({marks})"
        params[f"t{i}"] = tenant
        if keys is not None:
            cond += f' AND "{pk}" BETWEEN :lo{i} AND :hi{i}'
            params.update({f"lo{i}": keys[0], f"hi{i}": keys[1]})
        conds.append(f"({cond})")
    return " OR ".join(conds), params


def pending_from(wh: Warehouse, table: str,
                 parts: list[tuple[str, list[str], tuple[int, int] | None]]
                 ) -> tuple[str, dict[str, Any]]:
    """``FROM`` clause (alias ``o``) and bound values for the ODS rows of each (center,
    loads, inclusive key range or None): the rows :func:`pending_filter` selects.

    On DuckDB the parts are staged in a temporary table and joined: an OR of one condition
    per center took DuckDB's optimizer ~0.4 s to plan at 250 centers, whatever the rows (2 ms
    joined), and an hour plans one per batch. Other warehouses keep the OR (PostgreSQL plans
    it as index scans on the load id)."""
    pk = ods.primary_key(ods.SOURCE_TABLES[table])
    if wh.dialect != "duckdb":
        cond, params = pending_filter(pk, parts)
        return f"{ods.ods_name(table)} o WHERE {cond}", params
    rows = [(t, lid, *(keys if keys is not None else (-2**63, 2**63 - 1)))
            for t, loads, keys in parts for lid in loads]
    wh.execute("DROP TABLE IF EXISTS stage_pending")
    wh.execute("CREATE TEMPORARY TABLE stage_pending (tenant VARCHAR(40), load_id VARCHAR(40), "
               "lo BIGINT, hi BIGINT)")
    wh.load_arrow("stage_pending", pa.table({
        "tenant": pa.array([r[0] for r in rows], pa.string()),
        "load_id": pa.array([r[1] for r in rows], pa.string()),
        "lo": pa.array([r[2] for r in rows], pa.int64()),
        "hi": pa.array([r[3] for r in rows], pa.int64())}))
    return (f"{ods.ods_name(table)} o JOIN stage_pending sp ON o.org_code = sp.tenant "
            f'AND o._load_id = sp.load_id AND o."{pk}" BETWEEN sp.lo AND sp.hi'), {}


def ods_rows(wh: Warehouse, table: str, parts: list[tuple[str, list[str], tuple[int, int]]]
             ) -> pd.DataFrame:
    """The ODS rows of each (center, loads, inclusive key range), in one query."""
    return ods_frame(ods_table(wh, table, parts))


def ods_table(wh: Warehouse, table: str, parts: list[tuple[str, list[str], tuple[int, int]]]
              ) -> pa.Table:
    """:func:`ods_rows` as the warehouse's Arrow table (what the worker is handed)."""
    src, params = pending_from(wh, table, parts)
    return wh.query_arrow(f"SELECT o.* FROM {src}", params).drop_columns(
        ["_load_id", "_loaded_at"])


def ods_frame(t: pa.Table) -> pd.DataFrame:
    """ODS rows as standardization takes them (see :func:`_arrow_decimal`)."""
    return t.to_pandas(types_mapper=_arrow_decimal)


def _arrow_decimal(t: pa.DataType) -> pd.ArrowDtype | None:
    """Decimal (money) columns stay Arrow-backed: no ``Decimal`` object per value to build, and
    standardization casts them to float64 in C++ (object Decimals went through
    ``pd.to_numeric`` one by one); a quarantined row's original still shows the exact value."""
    return pd.ArrowDtype(t) if pa.types.is_decimal(t) else None


def person_keys(wh: Warehouse, tenant: str, patient_ids: Iterable[int]) -> pd.DataFrame:
    """Pseudonymous person keys of one center's patients (see :func:`person_keys_of`)."""
    ids = sorted({int(x) for x in patient_ids if pd.notna(x)})
    return person_keys_of(wh, pd.DataFrame({"tenant": [tenant] * len(ids), "patient_id": ids}))


def person_keys_of(wh: Warehouse, wanted: pd.DataFrame) -> pd.DataFrame:
    """Person keys of (tenant, patient_id) pairs, computed from the ODS patient rows.

    A key is an HMAC of the patient's identifying fields: computed once per (patient, source
    row version, key id) and kept in ``person_key_cache``, so the datasets that name the same
    patients, and later runs, look it up instead of hashing again. A new row version (the
    patient's data changed) or a rotated key (new key id) recomputes it.
    """
    from hisx.standards import pseudonym

    cols = ["tenant", "patient_id", "person_key"]
    pairs = wanted.dropna(subset=["patient_id"]).drop_duplicates(["tenant", "patient_id"])
    if pairs.empty:
        return pd.DataFrame(columns=cols)
    key = pseudonym.key_from_env()
    tenants = pairs["tenant"].astype(str).tolist()
    pids = pairs["patient_id"].astype("int64").tolist()
    memo = _MEMO.valid_for(wh, key.key_id)
    known = [memo.get(k) for k in zip(tenants, pids, strict=True)]
    hit = pd.DataFrame({"tenant": tenants, "patient_id": pids, "person_key": known},
                       columns=cols)
    hit = hit[hit["person_key"].notna()]
    if len(hit) == len(pairs):
        return hit
    miss = [i for i, k in enumerate(known) if k is None]
    stage = pa.table({"tenant": pa.array([tenants[i] for i in miss], pa.string()),
                      "patient_id": pa.array([pids[i] for i in miss], pa.int64())})
    with wh.transaction():
        wh.execute(PERSON_KEY_CACHE_DDL)
        wh.execute("DROP TABLE IF EXISTS stage_pids")
        wh.execute("CREATE TEMPORARY TABLE stage_pids (tenant VARCHAR(40), patient_id BIGINT)")
        wh.load_arrow("stage_pids", stage)
        p = wh.query_df(
            "SELECT p.org_code AS tenant, p.patient_id, p.row_version, c.person_key, "
            "CASE WHEN c.person_key IS NULL THEN p.id_no END AS id_no, "
            "CASE WHEN c.person_key IS NULL THEN p.name END AS name, "
            "p.birth_date, p.gender "
            "FROM ods_patients p JOIN stage_pids s ON s.tenant = p.org_code "
            "AND s.patient_id = p.patient_id "
            "LEFT JOIN person_key_cache c ON c.tenant = p.org_code AND "
            "c.patient_id = p.patient_id AND c.row_version = p.row_version AND c.key_id = :kid",
            {"kid": key.key_id},
        )
        wh.execute("DROP TABLE stage_pids")
        miss = p["person_key"].isna()
        if miss.any():
            m = p[miss]
            computed = pseudonym.person_keys(key, m["id_no"], m["name"], m["birth_date"],
                                             m["gender"])
            p.loc[miss, "person_key"] = computed
            cache_person_keys(wh, pd.DataFrame({
                "tenant": m["tenant"], "source_key": m["patient_id"],
                "row_version": m["row_version"], "key_id": key.key_id,
                "person_key": computed}))
    _MEMO.add(wh, p["tenant"].astype(str).tolist(), p["patient_id"].astype("int64").tolist(),
              p["person_key"].tolist())
    return pd.concat([hit, p[cols]], ignore_index=True) if len(hit) else p[cols]


class _KeyMemo:
    """The person keys this process looked up last, while ``ods_patients`` is unchanged.

    An hour's datasets name the same patients: without it each dataset's batch joined the
    city's whole ``ods_patients`` and ``person_key_cache`` again (a quarter of the 250-center
    hour's standardization). Valid only for the same warehouse, key id, and patient rows:
    their count and the sum of their row versions (an update raises a row's version, a
    removal lowers the count; the highest version alone misses an update below another
    source's rows). DuckDB warehouses only: there the stamp is a scan of one column;
    PostgreSQL would pay a table scan per lookup. Bounded: cleared when it would pass
    ``MAX`` entries."""

    MAX = 100_000

    def __init__(self) -> None:
        self.stamp: tuple | None = None
        self.keys: dict[tuple[str, int], str] = {}
        self.lock = threading.Lock()

    def valid_for(self, wh: Warehouse, key_id: str) -> dict[tuple[str, int], str]:
        if wh.dialect != "duckdb":
            return {}
        n, rv = wh.query_arrow("SELECT count(*) AS n, sum(row_version) AS rv FROM ods_patients"
                               ).to_pylist()[0].values()
        stamp = (getattr(wh, "url", None), key_id, n, rv)
        with self.lock:
            if stamp != self.stamp:
                self.stamp, self.keys = stamp, {}
            return self.keys

    def add(self, wh: Warehouse, tenants: list[str], pids: list[int], keys: list[str]) -> None:
        if wh.dialect != "duckdb":
            return
        with self.lock:
            if len(self.keys) + len(keys) > self.MAX:
                self.keys = {}
            if len(keys) <= self.MAX:
                self.keys.update(zip(zip(tenants, pids, strict=True), keys, strict=True))


_MEMO = _KeyMemo()


def cache_person_keys(wh: Warehouse, std: pd.DataFrame) -> None:
    """Keep the person keys of std person rows (tenant, source_key, row_version, key_id,
    person_key) for the datasets that follow."""
    need = {"tenant", "source_key", "row_version", "key_id", "person_key"}
    if not len(std) or not need <= set(std):
        return
    fresh = pa.table({
        "tenant": pa.array(std["tenant"].astype(str).tolist(), pa.string()),
        "patient_id": pa.array(std["source_key"].astype("int64"), pa.int64()),
        "row_version": pa.array(std["row_version"].astype("int64"), pa.int64()),
        "key_id": pa.array(std["key_id"].astype(str), pa.string()),
        "person_key": pa.array(std["person_key"].astype(str), pa.string())})
    wh.execute(PERSON_KEY_CACHE_DDL)
    wh.execute("DROP TABLE IF EXISTS stage_pk_fresh")
    wh.execute("CREATE TEMPORARY TABLE stage_pk_fresh (tenant VARCHAR(40), patient_id BIGINT, "
               "row_version BIGINT, key_id VARCHAR(64), person_key VARCHAR(64))")
    wh.load_arrow("stage_pk_fresh", fresh)
    wh.execute("DELETE FROM person_key_cache WHERE (tenant, patient_id) IN "
               "(SELECT tenant, patient_id FROM stage_pk_fresh)")
    wh.execute("INSERT INTO person_key_cache SELECT tenant, patient_id, row_version, key_id, "
               "person_key FROM stage_pk_fresh")
    wh.execute("DROP TABLE stage_pk_fresh")


def existing_keys(wh: Warehouse, spec, df: pd.DataFrame) -> pd.DataFrame | None:
    """Natural keys already standardized near the batch's business days (cross-batch dedup),
    with their center (the rows' ``org_code``).

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
    marks, centers = in_list("t", sorted(str(x) for x in df["org_code"].dropna().unique()))
    std = wh.query_df(
        f"SELECT tenant, source_key, {cols} FROM {std_table(spec.name)} WHERE tenant IN "
        f"({marks}) AND business_date BETWEEN :a AND :b", {**centers, "a": lo, "b": hi})
    if not len(std):
        return None
    return existing_keys_from_std(spec.name, std).assign(tenant=std["tenant"].to_numpy())


def plan_batches(group: list[Unit], max_rows: int) -> list[list[Unit]]:
    """The group's chunks as batches: centers sharing their maps together, up to
    ``max_rows`` rows a batch (a chunk larger than that is a batch alone; a center's chunks
    stay in order). Bounds the memory of one standardization pass."""
    from hisx.standards.maps import maps_group

    by_maps: dict[tuple, list[list[Unit]]] = {}
    for u in group:
        runs = by_maps.setdefault(maps_group(u[0].org_code, u[0].vendor), [[]])
        if runs[-1] and sum(x[3] for x in runs[-1]) + u[3] > max_rows:
            runs.append([])
        runs[-1].append(u)
    return [run for runs in by_maps.values() for run in runs]


def prefetch_person_keys(wh: Warehouse, spec, units: list[Unit]) -> None:
    """Look up the person keys of every pending row of a dataset at once, into the memo
    (:class:`_KeyMemo`), when they fit in it: each batch then finds its keys there.

    Every lookup that misses the memo joins the city's whole ``ods_patients`` and
    ``person_key_cache`` (~0.7 s at 250 centers, whatever its size); an hour's visits came in
    one batch per vendor's maps and size, each missing the memo (19 % of the 250-center
    hour's standardization). A backfill's pending rows do not fit: batches look up their
    own."""
    from hisx.pipelines.standardize import NEEDS_PERSON_KEYS

    if (spec.name not in NEEDS_PERSON_KEYS or wh.dialect != "duckdb" or not units
            or sum(u[3] for u in units) > _KeyMemo.MAX):
        return
    src, params = pending_from(wh, spec.source_table,
                               [(u[0].org_code, u[1], u[2]) for u in units])
    pairs = wh.query_df(f"SELECT DISTINCT o.org_code AS tenant, o.patient_id FROM {src}",
                        params)
    person_keys_of(wh, pairs)


def read_batch(wh: Warehouse, spec, units: list[Unit], now: datetime, load_id: str, *,
               arrow: bool = False) -> dict:
    """One batch's ODS rows with what standardization looks up (person keys, std keys).

    With ``arrow`` (a batch for the worker) the rules' rows stay the warehouse's Arrow table,
    handed over as it is, and the batch keeps as a frame only the columns its write reads."""
    from hisx.pipelines.standardize import NEEDS_PERSON_KEYS

    parts = [(u[0].org_code, u[1], u[2]) for u in units]
    rows = ods_table(wh, spec.source_table, parts) if arrow else None
    df = (ods_frame(rows.select([c for c in write_columns(spec) if c in rows.column_names]))
          if rows is not None else ods_rows(wh, spec.source_table, parts))
    centers = sorted({u[0].org_code for u in units})
    pkeys = (person_keys_of(wh, pd.DataFrame({"tenant": df["org_code"],
                                              "patient_id": df["patient_id"]}))
             if spec.name in NEEDS_PERSON_KEYS else None)
    # several centers: each row's own (a table's ``org_code`` column, once it is a frame)
    tenant = centers[0] if len(centers) == 1 else None if arrow else df["org_code"]
    args = dict(dataset=spec.name, df=rows if arrow else df, tenant=tenant,
                vendor=units[0][0].vendor, load_id=load_id, now=now, person_keys=pkeys,
                existing_keys=existing_keys(wh, spec, df))
    return {"units": units, "df": df, "load_id": load_id, "args": args}


def write_columns(spec) -> list[str]:
    """The source columns a batch's lookups and write read (its keys, times and patient)."""
    return list(dict.fromkeys(["org_code", spec.pk, spec.business_time, "updated_at",
                               "patient_id"]))


def compute(args: dict, *, arrow_rows: bool = False):
    """Standardize one batch and build its feed-ledger rows (pure: no warehouse). The rows
    may come as the warehouse's Arrow table (``read_batch(arrow=True)``). With
    ``arrow_rows`` the std rows are an Arrow-backed frame, converted once, before the ledger
    (whose payload columns then take its Arrow arrays as they are): the worker hands them
    over and the write loads them as Arrow."""
    from dataclasses import replace

    from hisx.pipelines.standardize import standardize

    a = dict(args)
    dataset = a.pop("dataset")
    df = a.pop("df")
    if isinstance(df, pa.Table):
        df = ods_frame(df)
        if a["tenant"] is None:
            a["tenant"] = df["org_code"]
    res = standardize(dataset, df, **a)
    if arrow_rows:
        res = replace(res, standardized=arrow_backed(res.standardized))
    # no envelopes: they are built from the std rows when sent (see feed_render)
    ledger = (feeds.build_ledger_rows(dataset, None, res.standardized, args["load_id"],
                                      envelopes=False)
              if len(res.standardized) else None)
    if arrow_rows and len(res.standardized):  # the write's own column, computed here
        res = replace(res, standardized=with_arrival_column(res.standardized, df, dataset))
    return res, ledger


def with_arrival_column(std: pd.DataFrame, df: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """``std`` (Arrow-backed) with its :data:`ARRIVAL` column, as the write would add it from
    the batch's source rows ``df``: in the worker, that is main-process time saved."""
    from hisx.pipelines.standardize import DATASETS

    keys = pa.table({"tenant": pa.array(std["tenant"]), "source_key": pa.array(std["source_key"])})
    arrival = _with_arrivals(keys, df, DATASETS[dataset].pk)[ARRIVAL]
    return std.assign(**{ARRIVAL: pd.Series(pd.arrays.ArrowExtensionArray(arrival),
                                            index=std.index)})


def as_arrow(df: pd.DataFrame) -> pa.Table | None:
    """``df`` as Arrow, as the std write converts it (``Table.from_pandas``; zero-copy from
    Arrow-backed columns), or ``None`` for a frame Arrow cannot hold."""
    try:
        return pa.Table.from_pandas(df, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None


def arrow_backed(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with Arrow-backed columns (:func:`as_arrow`), or as it is when Arrow cannot
    hold it."""
    t = as_arrow(df)
    return df if t is None else t.to_pandas(types_mapper=pd.ArrowDtype)


# -- write -----------------------------------------------------------------------------------
def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    full = [f for f in frames if len(f)]
    if not full:
        return frames[0]
    return full[0] if len(full) == 1 else pd.concat(full, ignore_index=True)


def group_stats(spec, batches: list[dict], computed: list) -> dict[str, StdStats]:
    """Per-center figures of a written group, each checked for conservation."""
    out: dict[str, StdStats] = {}
    for b, (res, _ledger) in zip(batches, computed, strict=True):
        n_in = b["df"]["org_code"].value_counts()
        n_std = res.standardized["tenant"].value_counts() if len(res.standardized) else {}
        n_q = res.quarantined["tenant"].value_counts() if len(res.quarantined) else {}
        version = _map_version(res.standardized)
        for t in sorted(set(n_in.index) | {u[0].org_code for u in b["units"]}):
            st = out.setdefault(t, StdStats(spec.name, t))
            st.add(StdStats(spec.name, t, rows_in=int(n_in.get(t, 0)),
                            standardized=int(n_std.get(t, 0)), quarantined=int(n_q.get(t, 0)),
                            deduplicated=int(res.deduplicated_by.get(t, 0)),
                            map_version=version))
        q = res.quarantined
        for t, reasons in zip(q.get("tenant", []), q.get("reasons", []), strict=True):
            for r in reasons:
                kind = ":".join(str(r).split(":")[:2])
                out[t].reasons[kind] = out[t].reasons.get(kind, 0) + 1
    for st in out.values():
        if not st.conserved:
            raise RuntimeError(f"conservation violated for {spec.name}/{st.tenant}: {st}")
    return out


def _load_ranges(wh: Warehouse, table: str, units: list[Unit],
                 stats: dict[str, StdStats]) -> None:
    """Row-version range and endpoint of the extraction loads each center's chunks consumed."""
    wanted = {(u[0].org_code, lid) for u in units for lid in u[1]}
    if not wanted:
        return
    tm, tp = in_list("t", sorted({t for t, _ in wanted}))
    lm, lp = in_list("l", sorted({lid for _, lid in wanted}))
    df = wh.query_df(
        "SELECT tenant, load_id, rv_from, rv_to, endpoint FROM load_log WHERE table_name = :tb "
        f"AND tenant IN ({tm}) AND load_id IN ({lm})", {"tb": table, **tp, **lp})
    df = df[[(t, lid) in wanted for t, lid in zip(df["tenant"], df["load_id"], strict=True)]]
    for t, g in df.groupby("tenant"):
        if t in stats and g["rv_to"].notna().any():
            st = stats[t]
            st.rv_from, st.rv_to = int(g["rv_from"].min()), int(g["rv_to"].max())
            st.endpoint = str(g["endpoint"].dropna().max() if g["endpoint"].notna().any()
                              else "")


def write_group(wh: Warehouse, spec, schema, batches: list[dict], computed: list
                ) -> list[StdStats]:
    """Write a group's batches in one transaction: std rows replace the keys' earlier
    versions, quarantine, person-key cache, feed outbox, dirty mart days, the std log (one row
    per center) and the loads whose last chunk this is."""
    stats = group_stats(spec, batches, computed)
    units = [u for b in batches for u in b["units"]]
    _load_ranges(wh, spec.source_table, units, stats)
    df = _concat([b["df"] for b in batches])
    std = _concat([r.standardized for r, _ in computed])
    q = _concat([r.quarantined for r, _ in computed])
    ledgers = [x for _, x in computed if x is not None]
    load_id = batches[0]["load_id"]
    with wh.transaction():
        _write_rows(wh, spec, schema, df, std, q,
                    pa.concat_tables(ledgers) if ledgers else None, load_id)
        runlog.log_std_many(wh, [dict(
            load_id=load_id, dataset=spec.name, tenant=st.tenant, rows_in=st.rows_in,
            standardized=st.standardized, quarantined=st.quarantined,
            deduplicated=st.deduplicated, map_version=st.map_version)
            for st in stats.values()])
        runlog.mark_done_many(wh, spec.name, [(u[0].org_code, lid) for u in units
                                               for lid in u[4]])
    return list(stats.values())


def _write_rows(wh: Warehouse, spec, schema, df: pd.DataFrame, std: pd.DataFrame,
                q: pd.DataFrame, ledger: pa.Table | None, load_id: str) -> None:
    dataset, table = spec.name, std_table(spec.name)
    keys = pa.table({"tenant": pc.cast(pa.array(df["org_code"], from_pandas=True), pa.string()),
                     "source_key": pc.cast(pa.array(df[spec.pk], from_pandas=True), pa.int64())})
    # the batch's centers and key range: DuckDB skips the std row groups that cannot hold them
    tm, tp = in_list("t", sorted(pc.unique(keys["tenant"]).to_pylist()))
    rng = {**tp, "lo": pc.min(keys["source_key"]).as_py(),
           "hi": pc.max(keys["source_key"]).as_py()}
    if len(q):
        q = q.copy()
        q["reasons"] = q["reasons"].map(lambda rs: json.dumps(list(rs), ensure_ascii=False))
        q["quarantined_at"] = datetime.now()
        q["load_id"] = load_id
    qcols = ["dataset", "tenant", "source_table", "source_key", "row_version", "reasons",
             "original", "load_id", "quarantined_at", "business_date"]
    with wh.transaction():
        wh.execute("DROP TABLE IF EXISTS stage_keys")
        wh.execute("CREATE TEMPORARY TABLE stage_keys (tenant VARCHAR(40), source_key BIGINT)")
        wh.load_arrow("stage_keys", keys)
        in_batch = (f"tenant IN ({tm}) AND source_key BETWEEN :lo AND :hi AND "
                    "(tenant, source_key) IN (SELECT tenant, source_key FROM stage_keys)")
        key = marts.DIRTY_KEYS.get(dataset)
        old = wh.query_df(f"SELECT DISTINCT tenant, business_date{', ' + key if key else ''} "
                          f"FROM {table} WHERE {in_batch}", rng)
        if key:  # a replaced version's key may have no record left on the range's days
            marts.mark_dirty_keys(wh, dataset, old["tenant"], old[key])
        if len(old):  # unsent messages of the versions replaced keep their own payload
            feed_render.materialize(wh, dataset, "SELECT tenant, source_key FROM stage_keys",
                                    {}, (rng["lo"], rng["hi"]))
        wh.execute(f"DELETE FROM {table} WHERE {in_batch}", rng)
        wh.execute(f"DELETE FROM quarantine WHERE dataset = :d AND {in_batch}",
                   {**rng, "d": dataset})
        wh.load_arrow(table, _to_arrow(std, [*std_columns(schema), ARRIVAL]) if ARRIVAL in std
                      else _with_arrivals(_to_arrow(std, std_columns(schema)), df, spec.pk))
        if len(q):
            wh.load_arrow("quarantine", _to_arrow(q, qcols))
        wh.execute("DROP TABLE stage_keys")
        if dataset == "person":
            cache_person_keys(wh, std)
        # the feed outbox is written in the same transaction as the rows it describes
        if ledger is not None:
            feeds.enqueue(wh, dataset, None, std, load_id, rows=ledger)
        # days of the old versions, the new ones, and the quarantined rows (for DQ marts)
        mark_dirty(wh, dataset, pd.concat([
            _days(old["tenant"], old["business_date"]),
            _days(df["org_code"], df[spec.business_time])], ignore_index=True), load_id)


def _with_arrivals(std: pa.Table, df: pd.DataFrame, pk: str) -> pa.Table:
    """``std`` with each row's source arrival (:data:`ARRIVAL`): the ``updated_at`` of the
    source row it was standardized from (``df``, one row per key)."""
    if std.num_rows == 0:
        return std
    df = df.drop_duplicates(["org_code", pk], keep="last")
    src = pa.table({
        "tenant": pc.cast(pa.array(df["org_code"], from_pandas=True), pa.string()),
        "source_key": pc.cast(pa.array(df[pk], from_pandas=True), pa.int64()),
        ARRIVAL: pa.array(pd.to_datetime(df["updated_at"], errors="coerce"),
                          type=pa.timestamp("us"), from_pandas=True)})
    pos = pa.table({"tenant": pc.cast(std["tenant"], pa.string()),
                    "source_key": pc.cast(std["source_key"], pa.int64()),
                    "_pos": pa.array(np.arange(std.num_rows))})
    found = pos.join(src, ["tenant", "source_key"], join_type="left outer").sort_by("_pos")
    return std.append_column(ARRIVAL, found[ARRIVAL])


def _days(tenants: pd.Series, times: pd.Series) -> pd.DataFrame:
    """The distinct (tenant, day) pairs of rows (few per batch, out of up to 25,000 rows)."""
    t = pa.table({"tenant": pc.cast(pa.array(tenants, from_pandas=True), pa.string()),
                  "day": pa.array(pd.to_datetime(times, errors="coerce").dt.floor("D"),
                                  from_pandas=True)})
    return t.group_by(["tenant", "day"]).aggregate([]).to_pandas()


def mark_dirty(wh: Warehouse, dataset: str, days: pd.DataFrame,
               load_id: str | None = None) -> None:
    """Record the (tenant, business day)s whose marts must be re-loaded (only if a mart
    reads ``dataset``), with the std load that wrote the rows (keyed marts re-load only the
    keys of the loads since the oldest one marked)."""
    if not any(dataset in deps for deps in marts.MART_DEPS.values()):
        return
    d = pd.DataFrame({"tenant": days["tenant"].astype(object),
                      "day": pd.to_datetime(days["day"], errors="coerce")}).dropna()
    d = d.assign(day=d["day"].dt.normalize()).drop_duplicates().sort_values(["tenant", "day"])
    if len(d):
        wh.load_arrow("mart_dirty", pa.table({
            "dataset": [dataset] * len(d), "tenant": pa.array(d["tenant"].tolist(), pa.string()),
            "business_date": pa.array(d["day"].dt.date.tolist(), pa.date32()),
            "load_id": pa.array([load_id] * len(d), pa.string())}))


def _to_arrow(df: pd.DataFrame, columns: list[str]) -> pa.Table:
    """``df``'s ``columns`` as Arrow, all-null for the ones it lacks (``df`` is not changed)."""
    t = pa.Table.from_pandas(df[[c for c in columns if c in df.columns]], preserve_index=False)
    for c in columns:
        if c not in t.column_names:
            t = t.append_column(c, pa.nulls(t.num_rows))
    return t.select(columns)


def _map_version(std: pd.DataFrame) -> str | None:
    if "map_version" in std and len(std):
        return str(std["map_version"].iloc[0])
    return None
