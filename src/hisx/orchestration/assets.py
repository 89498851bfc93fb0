"""Assets per layer, keyed ``[layer, name]`` and grouped by layer:
``source/<table>`` (external) → ``ods/<table>`` (per center) → ``std/<dataset>`` and
``marts/<mart>`` and ``feeds/regional_platform`` (per center × month) → ``share/*``.

Each asset is a thin wrapper over a Dagster-free step in :mod:`hisx.pipelines`; the
materialization metadata carries the counts that make the invariants visible. Every asset
accepts a run covering many partitions (``BackfillPolicy.single_run``): the demo and
backfills do all centers in one run per job; a sensor run does one partition.
"""


import json
import os
from datetime import date, datetime, timedelta

import dagster as dg

from hisx.config import Settings, dq_thresholds
from hisx.marts.runner import MART_DEPS, MARTS, mart_description
from hisx.orchestration import checks as pchecks
from hisx.orchestration.partitions import CENTER
from hisx.orchestration.resources import HisxResource
from hisx.orchestration.sources import DEFAULT_SOURCE, read_health, source_named
from hisx.pipelines import feeds, flow, reconcile, status
from hisx.pipelines.standardize import DATASETS
from hisx.simulator.schema import TABLES

SOURCE_GROUP, ODS_GROUP, STD_GROUP = "source", "ods", "std"
MART_GROUP, SHARE_GROUP, FEED_GROUP = "marts", "share", "feeds"
OWNERS = ["team:data-platform"]
SOURCE_TAG, UPTO_TAG = "hisx/source", "hisx/upto"

#: Transient source / broker errors: 3 retries, 2 s doubling, ±jitter.
RETRY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL,
                       jitter=dg.Jitter.PLUS_MINUS)
#: Op-level pool for steps that read a source database (limit set per deployment, deploy/).
SOURCE_POOL = "hisx_source"
SINGLE_RUN = dg.BackfillPolicy.single_run()


def _run_source(context: dg.AssetExecutionContext) -> str:
    return context.run.tags.get(SOURCE_TAG, DEFAULT_SOURCE)


# -- source (external) ---------------------------------------------------------------------------
source_specs = [
    dg.AssetSpec(["source", t.name], group_name=SOURCE_GROUP, kinds={"sqlserver"},
                 owners=OWNERS,
                 description=f"Production table `{t.name}` of the cloud HIS (SQL Server AG, read "
                 "on readable secondaries; SQLite in the demo). Not materialized by hisx.")
    for t in TABLES
]


# -- ods: per center, incremental by row-version cursor ----------------------------------------------
def _ods_asset(table: str) -> dg.AssetsDefinition:
    key = dg.AssetKey(["ods", table])
    t = next(x for x in TABLES if x.name == table)
    checks = []
    if t.info.get("business_time"):
        checks.append(pchecks.spec(
            "reconciliation", key, blocking=True,
            description="per center × business day row count and key hash equal between the "
            "source and ODS (up to the cursor), for the months this load touched"))
    if table == "registrations":
        checks.append(pchecks.spec(
            "freshness", key, "the center's rows still arrive during opening hours, measured "
            "against the source's own clock (offline detection; written to center_status)"))

    @dg.asset(
        key=key, deps=[dg.AssetKey(["source", table])], group_name=ODS_GROUP,
        kinds={"sql", "python"}, owners=OWNERS, partitions_def=CENTER,
        backfill_policy=SINGLE_RUN, retry_policy=RETRY, pool=SOURCE_POOL, check_specs=checks,
        description=f"Warehouse copy of source table `{table}`, landed incrementally by row "
        "version (cursor per source × table × center); the highest version per primary key "
        "wins. Partition = center.",
    )
    def _asset(context: dg.AssetExecutionContext, hisx: HisxResource):
        centers = set(context.partition_keys)
        src = source_named(_run_source(context))
        upto = json.loads(context.run.tags[UPTO_TAG]) if UPTO_TAG in context.run.tags else None
        # a configured source with replicas reads through the replica-aware extractor
        # (routing, lag, commit-safe bound); a single database (demo) through its engine
        replica = src.cfg is not None and src.cfg.url is None
        engine = None if replica else src.engine(hisx.settings())
        try:
            tenants = ([flow.Tenant(x.org_code, x.vendor or "") for x in src.cfg.tenants
                        if x.org_code in centers] if replica else
                       [x for x in src.tenants(engine) if x.org_code in centers])
            load_id = flow.new_load_id()
            with hisx.warehouse() as wh:
                if replica:
                    from hisx.pipelines.extract_sources import extract_configured

                    results = extract_configured(wh, src.cfg, tables=[table], load_id=load_id,
                                                 tenants=[x.org_code for x in tenants])
                else:
                    results = flow.extract(engine, wh, source=src.name, tenants=tenants,
                                           tables=[table], upto=upto, load_id=load_id)
                months = {x.org_code: [m.isoformat()[:7] for m in
                                       flow.touched_months(wh, load_id, x.org_code, [table])]
                          for x in tenants}
                months = {c: m for c, m in months.items() if m}
                diffs = (_reconcile_replica(src, wh, table, months) if replica else
                         _reconcile(engine, wh, src.name, table, months)) if checks else []
                st = (status.refresh_center_status(wh, [x.org_code for x in tenants],
                                                   **_status_kw())
                      if table == "registrations" else [])
        finally:
            if engine is not None:
                engine.dispose()
        read = sum(r.rows_read for r in results)
        health = read_health(src.name, hisx.settings())
        context.log.info(f"{table}: read {read} rows for {len(tenants)} center(s)")
        fences = sum(getattr(r, "pending_fences", 0) for r in results)
        if fences:
            from hisx.pipelines.extract_sources import pending_fences_message

            context.log.warning(pending_fences_message(src.name, results))
        yield dg.MaterializeResult(metadata={
            "rows_read": read,
            "rows_changed": sum(r.rows_changed for r in results),
            "pending_fences": fences,
            "per_center": {r.tenant: r.rows_read for r in results},
            "row_version_from": min((r.rv_from for r in results), default=0),
            "row_version_to": max((r.rv_to for r in results), default=0),
            "replica": next((r.endpoint for r in results if r.endpoint), "") or src.name,
            "replica_lag": max((r.get("lag") or 0 for r in health.get("replicas", [])),
                               default=0),
            "load_id": load_id,
            "months_by_center": dg.MetadataValue.json(months),
            **({"replica_reads": dg.MetadataValue.json(
                [{k: v for k, v in r.metadata().items()
                  if k in ("tenant", "endpoint", "used_primary", "reader_in_recovery", "lag",
                           "path", "upper_bound", "rows")} for r in results])}
               if replica else {}),
        })
        if t.info.get("business_time"):
            by_center = {c: [d for d in diffs if d.tenant == c] for c in sorted(centers)}
            yield from pchecks.per_center(context, key, "reconciliation", {
                c: (not ds, {"months": months.get(c, []), "differing_days": len(ds),
                             "first": dg.MetadataValue.json([d.__dict__ for d in ds[:20]])})
                for c, ds in by_center.items()})
        if table == "registrations":
            # the run's centers, and every center found offline (a silent center has no
            # rows, hence no run of its own: another center's run records it)
            yield from pchecks.per_center(context, key, "freshness", {
                s.tenant: (s.status != "offline", _status_md(s)) for s in st
                if s.tenant in centers or s.status == "offline"},
                severity=dg.AssetCheckSeverity.WARN)

    return _asset


def _status_kw() -> dict:
    """Offline rule from the environment: opening hours, allowed silence, the clock
    (``source``: the newest arrival of any center; ``wall``) or a fixed reference time."""
    a, b = (int(x) for x in os.environ.get("HISX_OPENING_HOURS", "8-17").split("-"))
    fixed = os.environ.get("HISX_STATUS_NOW")
    return {"opening": (a, b),
            "stale_after": timedelta(minutes=float(os.environ.get("HISX_STALE_MINUTES", "120"))),
            "clock": os.environ.get("HISX_STATUS_CLOCK", "source"),
            "now": datetime.fromisoformat(fixed) if fixed else None}


def _status_md(s: status.CenterStatus) -> dict:
    return {"status": s.status, "last_arrival": str(s.last_arrival),
            "silent_minutes": round(s.silent_minutes or 0.0, 1),
            "silent_opening_minutes": round(s.silent_opening_minutes or 0.0, 1),
            "reference_time": str(s.reference_time), "clock": s.clock}


def _reconcile(engine, wh, source: str, table: str, months: dict[str, list[str]]) -> list:
    """Reconcile the business months this load touched, per center (cheap after a backlog)."""
    out = []
    for center, ms in months.items():
        lo = date.fromisoformat(ms[0] + "-01")
        hi = (date.fromisoformat(ms[-1] + "-01") + timedelta(days=32)).replace(day=1)
        out += reconcile.reconcile(engine, wh, source, [center], [table],
                                   days=(lo, hi - timedelta(days=1)))
    return out


def _reconcile_replica(src, wh, table: str, months: dict[str, list[str]]) -> list:
    """As :func:`_reconcile`, on the replica the source's policy routes to."""
    from hisx.connectors.source.extract import ExtractStats, SourceExtractor

    ex = SourceExtractor(src.cfg)
    try:
        ep = ex.route(ExtractStats(source=src.name, table=table))
        out = []
        for center, ms in months.items():
            lo = date.fromisoformat(ms[0] + "-01")
            hi = (date.fromisoformat(ms[-1] + "-01") + timedelta(days=32)).replace(day=1)
            out += reconcile.reconcile(ep, wh, src.name, [center], [table],
                                       days=(lo, hi - timedelta(days=1)),
                                       table_sql={table: src.cfg.table(table).fullname})
        return out
    finally:
        ex.close()


# -- std: per center × month ---------------------------------------------------------------------
def _std_asset(dataset: str) -> dg.AssetsDefinition:
    from hisx.standards.datasets import load_schema

    spec = DATASETS[dataset]
    schema = load_schema(dataset)
    tables = [spec.source_table] + (["patients"] if spec.source_table != "patients" else [])
    key = dg.AssetKey(["std", dataset])

    @dg.asset(
        key=key, group_name=STD_GROUP, kinds={"python", "pandas"}, owners=OWNERS,
        deps=[dg.AssetKey(["ods", t]) for t in tables],
        partitions_def=CENTER, backfill_policy=SINGLE_RUN,
        description=f"{schema.get('title', dataset)} — {schema.get('description', '')}\n\n"
        f"Standardized `{dataset}` records from `ods/{spec.source_table}` (WS 363 data "
        "elements, WS 364 value sets); failing rows go to `quarantine` with every reason. "
        "A run standardizes the center's pending loads and re-dirties their business days.",
        check_specs=[
            pchecks.spec("conservation", key, blocking=True,
                         description="rows in = standardized + quarantined + "
                         "deduplicated, per center and batch"),
            pchecks.spec("dq_quarantine_rate", key, "quarantined / rows in stays under the "
                         "dataset's threshold (HISX_DQ_THRESHOLDS, default 10 %)"),
        ],
    )
    def _asset(context: dg.AssetExecutionContext, hisx: HisxResource):
        centers = set(context.partition_keys)
        with hisx.warehouse() as wh:
            tenants = [t for t in _tenants(hisx, wh) if t.org_code in centers]
            stats = flow.standardize_tenants(wh, dataset, tenants, now=datetime.now())
        per = {s.tenant: {"in": s.rows_in, "std": s.standardized, "quarantined": s.quarantined,
                          "dedup": s.deduplicated} for s in stats}
        totals = {k: sum(getattr(s, k) for s in stats)
                  for k in ("rows_in", "standardized", "quarantined", "deduplicated")}
        limit = dq_thresholds().get(dataset, dq_thresholds()["default"])
        rates = {s.tenant: round(s.quarantined / s.rows_in, 4) for s in stats if s.rows_in}
        rvs = [s for s in stats if s.rv_to is not None]
        yield dg.MaterializeResult(metadata={
            **totals, "per_center": per,
            "row_version_from": min((s.rv_from for s in rvs), default=0),
            "row_version_to": max((s.rv_to for s in rvs), default=0),
            "map_version": next((s.map_version for s in stats if s.map_version), "") or "",
            "replica": next((s.endpoint for s in stats if s.endpoint), ""),
            "reasons": dg.MetadataValue.json({s.tenant: s.reasons for s in stats if s.reasons}),
        })
        yield from pchecks.per_center(context, key, "conservation", {
            s.tenant: (s.conserved, per[s.tenant]) for s in stats})
        yield from pchecks.per_center(context, key, "dq_quarantine_rate", {
            s.tenant: (rates.get(s.tenant, 0.0) <= limit,
                       {"threshold": limit, "rate": rates.get(s.tenant, 0.0),
                        "rows_in": s.rows_in, "quarantined": s.quarantined}) for s in stats},
            severity=dg.AssetCheckSeverity.WARN)

    return _asset


def _tenants(hisx: HisxResource, wh) -> list[flow.Tenant]:
    """Centers with their vendor, from the landed organizations (no source round trip)."""
    df = wh.query_df("SELECT org_code, his_vendor, org_name FROM ods_organizations")
    if not len(df):
        return hisx.tenants()
    return [flow.Tenant(str(a), str(b), str(c)) for a, b, c in df.itertuples(index=False)]


# -- marts ---------------------------------------------------------------------------------------
@dg.multi_asset(
    specs=[
        dg.AssetSpec(["marts", m], group_name=MART_GROUP, kinds={"sql"}, owners=OWNERS,
                     deps=[dg.AssetDep(dg.AssetKey(["std", d])) for d in MART_DEPS[m]],
                     description=mart_description(m) + "\n\nRe-loaded per center for the business "
                     "days its new rows made dirty (delete-range-then-insert).")
        for m in MARTS
    ],
    partitions_def=CENTER, backfill_policy=SINGLE_RUN, can_subset=False,
)
def marts_assets(context: dg.AssetExecutionContext, hisx: HisxResource):
    with hisx.warehouse() as wh:
        done = flow.build_marts(wh, tenants=context.partition_keys)
        for m in MARTS:
            rows = int(wh.scalar(f"SELECT count(*) FROM {m}") or 0)
            yield dg.MaterializeResult(
                asset_key=["marts", m],
                metadata={"rows": rows,
                          "reloaded_ranges": {t: [f"{a}..{b}" for a, b in r]
                                              for t, r in done.items()}})


# -- feeds ---------------------------------------------------------------------------------------
@dg.asset(
    key=["feeds", "regional_platform"], group_name=FEED_GROUP, kinds={"kafka"}, owners=OWNERS,
    deps=[dg.AssetKey(["std", d]) for d in DATASETS], partitions_def=CENTER,
    backfill_policy=SINGLE_RUN, retry_policy=RETRY,
    description="Push feed to the regional health information platform: sends the pending "
    "messages of the feed ledger (outbox) with acks=all and idempotence; resumes after an "
    "outage, never re-sends what is acked. Without a broker, writes the local outbox.",
)
def feeds_publish(context: dg.AssetExecutionContext, hisx: HisxResource) -> dg.MaterializeResult:
    with hisx.warehouse() as wh:
        stats = feeds.publish(wh, hisx.settings())
        ledger = feeds.status(wh)
    if not stats.ok:  # raised: the retry policy retries transient broker errors
        raise dg.Failure(f"feed publish stopped: {stats.error}",
                         metadata={k: v for k, v in stats.as_dict().items() if k != "topics"})
    return dg.MaterializeResult(metadata={**stats.as_dict(),
                                          "ledger": dg.MetadataValue.md(ledger.to_markdown()
                                                                        if len(ledger) else "")})


# -- share ---------------------------------------------------------------------------------------
share_specs = [
    dg.AssetSpec(["share", "sql_api"], group_name=SHARE_GROUP, kinds={"sql", "fastapi"},
                 owners=OWNERS, deps=[dg.AssetKey(["marts", m]) for m in MARTS],
                 description="Share interfaces over the marts: read-only SQL per center, REST "
                 "/api/v1 and SOAP /ws (served by `hisx api serve`; see docs/api.md)."),
]


@dg.asset(key=["share", "data_dictionary"], group_name=SHARE_GROUP, kinds={"markdown"},
          owners=OWNERS, description="The data dictionary (Markdown + HTML) of every dataset, "
          "data element and value set, written under $HISX_HOME/dictionary.")
def data_dictionary(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    from hisx.standards.dictionary import write_dictionary

    paths = write_dictionary(Settings.from_env().home / "dictionary")
    return dg.MaterializeResult(metadata={"files": [str(p) for p in paths]})


ods_assets = [_ods_asset(t.name) for t in TABLES]
std_assets = [_std_asset(d) for d in DATASETS]
all_assets = [*source_specs, *ods_assets, *std_assets, marts_assets, feeds_publish,
              *share_specs, data_dictionary]
