"""Runs the mart SQL files: one file per mart table, idempotent per tenant × business-day range.

Each ``sql/<mart>.sql`` holds ``CREATE TABLE IF NOT EXISTS`` then a ``DELETE`` of the
(tenant, day range) and an ``INSERT … SELECT`` of the same range, with bound parameters
``:tenant``, ``:date_from`` and ``:date_to`` (inclusive). The runner executes the delete and
insert inside one transaction, so readers never see a half-loaded range and re-runs give the
same contents. Every mart has ``tenant`` and ``period_start`` columns.

Three load shapes, all delete-then-insert and deterministic:

* range marts (facts, daily aggregates, ``dim_date``): exactly the days of the range;
* monthly marts: the whole months the range touches; cumulative monthly marts
  (``mart_chronic_monthly``, ``mart_family_doctor_monthly``): every month from the range's first
  month on, since a registry or a contract counts in all later months;
* :data:`FULL_REFRESH` marts (the small dimensions, ``mart_dq_load_daily``): all rows of the
  tenant, whatever the range;
* ``dim_person`` (one row per person across records): the persons with a record in the range
  plus the keys in ``mart_dirty_keys`` (see :data:`DIRTY_KEYS`).

A keyed mart (the facts: one row per source row, ``tenant`` + ``source_key``) ends its file with
a ``SELECT`` of the keys whose rows may have changed since a load id (``:since``): its std rows
and quarantined rows from that load on, and the rows joined to a changed parent. Given
``since``, :func:`load_mart_many` re-loads only those keys of the range on DuckDB
(:func:`_keyed`): what an hour brought, not the week a late cancellation spans.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from datetime import date, timedelta
from functools import cache
from importlib import resources

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from hisx.config import positive_int_env
from hisx.connectors.warehouse import Warehouse, ident, split_statements

#: Marts in load order (later ones read earlier ones), with the std datasets each reads.
MART_DEPS: dict[str, tuple[str, ...]] = {
    # dimensions
    "dim_center": ("outpatient_visit",),
    "dim_date": (),
    "dim_department": ("outpatient_visit",),
    "dim_staff": ("outpatient_visit", "prescription", "chronic_followup", "family_contract",
                  "dispense"),
    "dim_drug": ("prescription_item",),
    "dim_diagnosis": ("diagnosis",),
    "dim_person": ("person",),
    # facts
    "fact_visit": ("outpatient_visit",),
    "fact_diagnosis": ("diagnosis", "outpatient_visit"),
    "fact_prescription_item": ("prescription_item", "prescription"),
    "fact_charge": ("charge",),
    "fact_dispense": ("dispense", "prescription"),
    "fact_chronic_followup": ("chronic_followup",),
    "fact_family_contract": ("family_contract",),
    # aggregates
    "mart_visits_daily": ("outpatient_visit",),
    "mart_visits_monthly": ("outpatient_visit",),
    "mart_revenue_daily": ("charge",),
    "mart_revenue_monthly": ("charge",),
    "mart_drug_monthly": ("prescription_item", "prescription"),
    "mart_diagnosis_monthly": ("diagnosis", "outpatient_visit"),
    "mart_chronic_monthly": ("chronic_followup", "diagnosis", "outpatient_visit"),
    "mart_family_doctor_monthly": ("family_contract", "chronic_followup", "diagnosis",
                                   "outpatient_visit"),
    "mart_dq_daily": ("person", "outpatient_visit", "diagnosis", "prescription",
                      "prescription_item", "charge", "dispense", "chronic_followup",
                      "family_contract"),
    "mart_data_quality": ("person", "outpatient_visit", "diagnosis", "prescription",
                          "prescription_item", "charge", "dispense", "chronic_followup",
                          "family_contract"),
    "mart_dq_load_daily": (),
}
MARTS: tuple[str, ...] = tuple(MART_DEPS)

#: Marts re-loaded whole per tenant (the range is ignored).
FULL_REFRESH: frozenset[str] = frozenset({
    "dim_center", "dim_department", "dim_staff", "dim_drug", "dim_diagnosis",
    "mart_dq_load_daily",
})

#: Datasets whose replaced or removed std rows leave their key in ``mart_dirty_keys``, with
#: the key column: a mart keyed on it (``dim_person``) re-loads those keys besides the ones
#: with a record in its range, since the old version's key may have no record left there.
DIRTY_KEYS: dict[str, str] = {"person": "person_key"}

DIRTY_KEYS_DDL = """CREATE TABLE IF NOT EXISTS mart_dirty_keys (
    dataset VARCHAR(60) NOT NULL, tenant VARCHAR(40) NOT NULL, dim_key VARCHAR(64) NOT NULL)"""

#: Dirty days closer than this are loaded as one range (a longer set-based range is far cheaper
#: than many one-day statements; re-loading a clean day is a no-op by idempotence).
MERGE_GAP_DAYS = 92


def mart_sql(name: str) -> str:
    return resources.files("hisx.marts").joinpath("sql", f"{name}.sql").read_text("utf-8")


def mart_description(name: str) -> str:
    """The leading ``--`` comment block of a mart's SQL file (its documentation)."""
    lines = []
    for ln in mart_sql(name).splitlines():
        if not ln.startswith("--"):
            break
        lines.append(ln[2:].strip())
    return " ".join(lines)


def mark_dirty_keys(wh: Warehouse, dataset: str, tenants: pd.Series, keys: pd.Series) -> None:
    """Record the distinct (tenant, key)s of replaced or removed rows of ``dataset`` (only a
    dataset in :data:`DIRTY_KEYS`)."""
    if dataset not in DIRTY_KEYS or not len(keys):
        return
    t = pa.table({"tenant": pa.array(tenants, pa.string(), from_pandas=True),
                  "dim_key": pa.array(keys, pa.string(), from_pandas=True)})
    t = t.filter(pc.is_valid(t["dim_key"])).group_by(["tenant", "dim_key"]).aggregate([])
    if t.num_rows:
        wh.load_arrow("mart_dirty_keys", pa.table({
            "dataset": pa.array([dataset] * t.num_rows, pa.string()),
            "tenant": t["tenant"], "dim_key": t["dim_key"]}))


def clear_dirty_keys(wh: Warehouse, tenants: Iterable[str]) -> None:
    """Forget the dirty keys of ``tenants`` once their keyed marts are re-loaded."""
    names = {f"t{i}": t for i, t in enumerate(sorted(set(tenants)))}
    if names:
        wh.execute("DELETE FROM mart_dirty_keys WHERE tenant IN "
                   f"({', '.join(':' + k for k in names)})", names)


def _is_ddl(stmt: str) -> bool:
    return stmt.lstrip().upper().startswith(("CREATE", "ALTER"))


def _is_keys(stmt: str) -> bool:
    return stmt.lstrip().upper().startswith("SELECT")


def _split_keys(stmts: list[str]) -> tuple[list[str], str | None]:
    """A mart's load statements and its changed-keys query (None: not a keyed mart)."""
    keys = [s for s in stmts if _is_keys(s)]
    return [s for s in stmts if not _is_keys(s)], (keys[0] if keys else None)


@cache
def keyed(name: str) -> bool:
    """Whether a mart's file has a changed-keys query (a keyed mart: see the module doc)."""
    return any(_is_keys(s) for s in split_statements(mart_sql(name)))


def ensure_marts(wh: Warehouse, marts: tuple[str, ...] = MARTS) -> None:
    """Create the std tables the marts read (empty if not yet standardized), the reference
    tables, and the mart tables."""
    from hisx.marts.reference import ensure_reference
    from hisx.pipelines import ods
    from hisx.pipelines.std_tables import ensure_std
    from hisx.standards.datasets import load_schema

    ods.ensure_ods(wh)
    for ds in sorted({d for m in marts for d in MART_DEPS.get(m, ())} | _ALL_DQ):
        ensure_std(wh, ds, load_schema(ds))
    from hisx.pipelines import runlog

    runlog.ensure_runlog(wh)
    ensure_reference(wh)
    wh.execute(DIRTY_KEYS_DDL)
    for name in marts:
        for stmt in split_statements(mart_sql(name)):
            if _is_ddl(stmt):
                wh.execute(stmt)


_ALL_DQ = frozenset(MART_DEPS["mart_dq_daily"])


_DELETE = re.compile(r"^\s*DELETE\s+FROM\s+(\w+)\s+WHERE\s+(.*)$", re.DOTALL | re.IGNORECASE)
_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)\s+(.*)$", re.DOTALL | re.IGNORECASE)


def mart_merge() -> bool:
    """Whether DuckDB marts load by difference (``HISX_MART_MERGE``, default on)."""
    return os.environ.get("HISX_MART_MERGE", "1").strip().lower() not in ("0", "false", "no")


def _run(wh: Warehouse, table: str, stmts: list[str], params: dict,
         since: str | None = None) -> None:
    """A mart's statements, by difference (:func:`_merged`; only the changed keys with
    ``since``: :func:`_keyed`) when the range already has rows (a first load of a range, as
    in a backfill, inserts straight away)."""
    stmts, keys = _split_keys(stmts)
    by_key = keys is not None and since is not None
    merged = _keyed(wh, table, stmts, keys) if by_key else _merged(wh, table, stmts)
    run_params = {**params, "since": since} if by_key else params
    if merged is not stmts:
        d = _DELETE.match(stmts[0])
        assert d is not None
        scope = d.group(2).strip()
        if wh.query_arrow(f"SELECT 1 FROM {table} WHERE ({scope}) LIMIT 1", params
                          ).num_rows == 0:
            merged = stmts[1:]
    for stmt in merged:
        wh.run_script(stmt, run_params)


def _merged(wh: Warehouse, table: str, stmts: list[str], keys: str | None = None
            ) -> list[str]:
    """A mart's ``DELETE … WHERE scope; INSERT INTO t query`` as a load by difference: the
    query's rows go to a scratch table, then only the scope's rows not among them are deleted
    and only the new rows not already there are inserted; with ``keys`` (a query of
    ``tenant, source_key``), only the scope's rows of those keys (:func:`_keyed`).

    The result is the same rows (every mart row is unique: its grain). On DuckDB the
    delete-then-insert of a range re-wrote every row of it, and the checkpoint then re-wrote
    every row group holding one: a cancelled visit a week old made the hour rewrite a week
    of every fact table (5.6 s of checkpoint in the 250-center hour). Other warehouses, and
    any other statement shape, keep the delete-then-insert."""
    if wh.dialect != "duckdb" or not mart_merge() or len(stmts) != 2:
        return stmts
    d, i = _DELETE.match(stmts[0]), _INSERT.match(stmts[1])
    if not (d and i and d.group(1) == table == i.group(1)):
        return stmts
    cols = [c for c in wh.query_arrow(f"SELECT * FROM {table} LIMIT 0").column_names]
    same = " AND ".join(f'n."{c}" IS NOT DISTINCT FROM {table}."{c}"' for c in cols)
    scope, query, before, after = d.group(2).strip(), i.group(2), [], []
    if keys is not None:
        in_keys = "(tenant, source_key) IN (SELECT tenant, source_key FROM mart_keys)"
        scope = f"({scope}) AND {in_keys}"
        names = ", ".join(f'"{c}"' for c in cols)
        query = f"SELECT * FROM ({query}) AS q({names}) WHERE {in_keys}"
        before = ["DROP TABLE IF EXISTS mart_keys",
                  "CREATE TEMPORARY TABLE mart_keys (tenant VARCHAR(40), source_key BIGINT)",
                  f"INSERT INTO mart_keys {keys}"]
        after = ["DROP TABLE mart_keys"]
    return before + [
        "DROP TABLE IF EXISTS mart_new",
        f"CREATE TEMPORARY TABLE mart_new AS SELECT * FROM {table} LIMIT 0",
        f"INSERT INTO mart_new {query}",
        f"DELETE FROM {table} WHERE ({scope}) AND NOT EXISTS "
        f"(SELECT 1 FROM mart_new n WHERE {same})",
        f"INSERT INTO {table} SELECT * FROM mart_new EXCEPT ALL "
        f"SELECT * FROM {table} WHERE ({scope})",
        "DROP TABLE mart_new",
    ] + after


def _keyed(wh: Warehouse, table: str, stmts: list[str], keys: str) -> list[str]:
    """:func:`_merged` restricted to the keys ``keys`` selects (rows changed since a load):
    the range's rows of those keys are computed, compared and replaced; every other row of
    the range is left unread. The keys query covers every way a fact row can change (its
    row re-written or quarantined, a joined parent changed); a removal the std tables cannot
    show (a hard delete) leaves its day dirty without a load id, which loads the whole range
    (``build_marts``)."""
    return _merged(wh, table, stmts, keys)


def load_mart(wh: Warehouse, name: str, tenant: str, date_from: date, date_to: date,
              since: str | None = None) -> int:
    """Delete-then-insert one mart for one tenant and day range (by difference on DuckDB:
    :func:`_merged`; only the keys changed from load ``since`` on for a keyed mart:
    :func:`_keyed`); returns rows in the range (all of the tenant's rows for a full-refresh
    mart)."""
    stmts = [s for s in split_statements(mart_sql(name)) if not _is_ddl(s)]
    params = {"tenant": tenant, "date_from": date_from, "date_to": date_to}
    with wh.transaction():
        _run(wh, name, stmts, params, since)
    where = "" if name in FULL_REFRESH else " AND period_start BETWEEN :date_from AND :date_to"
    return int(wh.scalar(f"SELECT count(*) FROM {ident(name)} WHERE tenant = :tenant{where}",
                         params) or 0)


_TENANT_EQ = re.compile(r"\b((?:\w+\.)?tenant)\s*=\s*:tenant\b")
_OVER = re.compile(r"\bOVER\s*\(\s*(PARTITION\s+BY\s+(?:\w+\.)?tenant\b)?", re.IGNORECASE)


#: Marts whose SQL was reviewed to be tenant-separable: every statement names its tenant only
#: in ``[alias.]tenant = :tenant`` filters (``ods_organizations.org_code`` is exposed as
#: ``tenant`` first), the output tenant comes from the data (never ``SELECT :tenant``), every
#: CTE carries tenant, every join matches on tenant (the constant disease groups of
#: mart_chronic_monthly are crossed with a per-tenant month list), and every GROUP BY and
#: window starts with tenant. The same statements over a set of tenants then give, per tenant,
#: exactly the rows of a one-tenant load (tests/marts/test_many_tenants.py checks it on every
#: mart table, over several ranges). Today that is every mart.
TENANT_SEPARABLE: frozenset[str] = frozenset({
    "dim_center", "dim_date", "dim_department", "dim_staff", "dim_drug", "dim_diagnosis",
    "dim_person", "mart_data_quality", "mart_dq_daily",
    "fact_visit", "fact_diagnosis",
    "fact_prescription_item", "fact_charge", "fact_dispense", "fact_chronic_followup",
    "fact_family_contract", "mart_visits_daily", "mart_visits_monthly", "mart_revenue_daily",
    "mart_revenue_monthly", "mart_drug_monthly", "mart_diagnosis_monthly", "mart_dq_load_daily",
    "mart_chronic_monthly", "mart_family_doctor_monthly",
})


@cache
def tenant_separable(name: str) -> bool:
    """A reviewed mart (:data:`TENANT_SEPARABLE`) whose SQL still names its tenant only in
    ``[alias.]tenant = :tenant`` filters and partitions every window by tenant first (a
    guard against an edit that breaks the review)."""
    if name not in TENANT_SEPARABLE:
        return False
    stmts = [s for s in split_statements(mart_sql(name)) if not _is_ddl(s)]
    for stmt in stmts:
        if ":tenant" in _TENANT_EQ.sub("", stmt):
            return False
        if any(m.group(1) is None for m in _OVER.finditer(stmt)):
            return False
    return True


def mart_batch_tenants() -> int:
    """Centers per set-based mart statement over a month (``HISX_MART_BATCH_TENANTS``,
    default 32): a statement over 125 centers ran DuckDB out of its 256 MB buffer pool; 31
    ran in it."""
    return positive_int_env("HISX_MART_BATCH_TENANTS", 32)


#: Marts whose work per center follows the day range they are given: they read only the
#: range's rows (a fact, by key or by day; a daily count; the range's persons and days; the
#: daily data-quality counts, since std rows carry their arrival and quarantine rows their
#: business day; the scorecard, which looks up only the range's prescriptions' visits and
#: charges). The others read more whatever the range: the monthly marts whole months (the
#: cumulative ones every month from the range's on), the load-log DQ mart the centers' logs.
RANGE_BOUND: frozenset[str] = frozenset({
    "fact_visit", "fact_diagnosis", "fact_prescription_item", "fact_charge", "fact_dispense",
    "fact_chronic_followup", "fact_family_contract", "mart_visits_daily",
    "mart_revenue_daily", "dim_date", "dim_person", "mart_dq_daily", "mart_data_quality",
})


def batch_tenants(name: str, date_from: date, date_to: date) -> int:
    """Centers per statement for one mart and range: :func:`mart_batch_tenants` for a month
    or more; for a :data:`RANGE_BOUND` mart, as many more as keep the statement's
    center-days at a month's (a one-day range: every center of a city at once). The other
    marts keep the month's count whatever the range.

    An hour touches a day or a week of every center: in batches of 32 centers, the fixed
    cost of each statement (its scratch tables, the compare, the commit) was most of the
    light marts' time (250 centers: 8 batches of each of 25 marts)."""
    base = mart_batch_tenants()
    if name not in RANGE_BOUND:
        return base
    days = (date_to - date_from).days + 1
    return max(base, base * 31 // max(days, 1))


def load_mart_many(wh: Warehouse, name: str, tenants: list[str], date_from: date,
                   date_to: date, since: str | None = None) -> None:
    """:func:`load_mart` for several tenants with the same day range: one delete and one insert
    over all of them when the mart is :func:`tenant_separable`, else one load per tenant.

    A city backfill loads each mart for hundreds of centers with the same month: one
    set-based statement instead of hundreds (measured in bench/bench_city.py). ``since``: only
    the keys changed from that load on, for a keyed mart (:func:`_keyed`)."""
    if len(tenants) == 1 or not tenant_separable(name):
        for t in tenants:
            load_mart(wh, name, t, date_from, date_to, since)
        return
    size = batch_tenants(name, date_from, date_to)
    if len(tenants) > size:  # bounded work per statement, whatever the city's size
        ordered = sorted(tenants)
        for i in range(0, len(ordered), size):
            load_mart_many(wh, name, ordered[i:i + size], date_from, date_to, since)
        return
    stmts = [_TENANT_EQ.sub(r"\1 IN (SELECT tenant FROM mart_scope)", s)
             for s in split_statements(mart_sql(name)) if not _is_ddl(s)]
    params = {"date_from": date_from, "date_to": date_to}
    with wh.transaction():
        wh.execute("DROP TABLE IF EXISTS mart_scope")
        wh.execute("CREATE TEMPORARY TABLE mart_scope (tenant VARCHAR(40))")
        wh.load_arrow("mart_scope", pa.table({"tenant": pa.array(sorted(tenants), pa.string())}))
        if wh.dialect == "postgresql":  # autovacuum never analyzes temporary tables
            wh.execute("ANALYZE mart_scope")
        _run(wh, name, stmts, params, since)
        wh.execute("DROP TABLE mart_scope")


def plan_ranges(days: Iterable[date], gap_days: int = MERGE_GAP_DAYS) -> list[tuple[date, date]]:
    """Dirty days -> inclusive ranges, merging days less than ``gap_days`` apart."""
    out: list[tuple[date, date]] = []
    for d in sorted(set(days)):
        if out and d - out[-1][1] <= timedelta(days=gap_days):
            out[-1] = (out[-1][0], d)
        else:
            out.append((d, d))
    return out


def load_tenant(wh: Warehouse, tenant: str, days: Iterable[date],
                marts: tuple[str, ...] = MARTS) -> list[tuple[date, date]]:
    """Load every mart for a tenant's dirty days: planned ranges, marts in load order; each
    full-refresh mart once."""
    ranges = plan_ranges(days)
    if not ranges:
        return []
    for name in marts:
        if name in FULL_REFRESH:
            load_mart(wh, name, tenant, ranges[0][0], ranges[-1][1])
            continue
        for lo, hi in ranges:
            load_mart(wh, name, tenant, lo, hi)
    return ranges


def refresh_dirty(wh: Warehouse, marts: tuple[str, ...] = MARTS) -> dict[str, list]:
    """Re-load the marts for the days in ``mart_dirty``, then clear exactly those days.

    Drop-in for :func:`hisx.pipelines.flow.build_marts` with range planning (see
    :data:`MERGE_GAP_DAYS`).
    """
    dirty = wh.query_df("SELECT DISTINCT tenant, business_date FROM mart_dirty")
    done: dict[str, list] = {}
    for tenant, grp in dirty.groupby("tenant"):
        days = [pd.Timestamp(d).date() for d in grp["business_date"]]
        done[str(tenant)] = load_tenant(wh, str(tenant), days, marts)
        with wh.transaction():
            clear_dirty_keys(wh, [str(tenant)])
            for lo, hi in plan_ranges(days, gap_days=1):
                wh.execute("DELETE FROM mart_dirty WHERE tenant = :t AND business_date "
                           "BETWEEN :a AND :b", {"t": tenant, "a": lo, "b": hi})
    return done
