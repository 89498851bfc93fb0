"""Assets per layer: ``ods/<table>`` → ``std/<dataset>`` → ``marts/<mart>``.

Each asset is a thin wrapper over a Dagster-free step in :mod:`hisx.pipelines.flow`; the
materialization metadata carries the counts that make the invariants visible.
"""


from datetime import datetime

import dagster as dg

from hisx.marts.runner import MART_DEPS, MARTS
from hisx.orchestration.resources import HisxResource
from hisx.pipelines import feeds, flow
from hisx.pipelines.standardize import DATASETS
from hisx.simulator.schema import TABLES

ODS_GROUP, STD_GROUP, MART_GROUP, FEED_GROUP = "ods", "std", "marts", "feeds"


def _ods_asset(table: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=["ods", table],
        group_name=ODS_GROUP,
        kinds={"sql", "python"},
        description=f"Warehouse copy of source table `{table}`, landed incrementally by row "
        "version; the highest version per primary key wins.",
    )
    def _asset(context: dg.AssetExecutionContext, hisx: HisxResource) -> dg.MaterializeResult:
        engine = hisx.source_engine()
        try:
            tenants = flow.discover_tenants(engine)
            with hisx.warehouse() as wh:
                results = flow.extract(engine, wh, source=hisx.source_name, tenants=tenants,
                                       tables=[table])
        finally:
            engine.dispose()
        read = sum(r.rows_read for r in results)
        changed = sum(r.rows_changed for r in results)
        context.log.info(f"{table}: read {read}, changed {changed}")
        return dg.MaterializeResult(
            metadata={
                "rows_read": read,
                "rows_changed": changed,
                "per_tenant": {r.tenant: r.rows_read for r in results},
                "row_version_to": max((r.rv_to for r in results), default=0),
                "endpoint": next((r.endpoint for r in results if r.endpoint), ""),
            }
        )

    return _asset


def _std_asset(dataset: str) -> dg.AssetsDefinition:
    spec = DATASETS[dataset]
    deps = [dg.AssetKey(["ods", spec.source_table])]
    if spec.source_table != "patients":
        deps.append(dg.AssetKey(["ods", "patients"]))
    key = dg.AssetKey(["std", dataset])

    @dg.asset(
        key=key,
        deps=deps,
        group_name=STD_GROUP,
        kinds={"python", "pandas"},
        description=f"Standardized `{dataset}` records (WS 363 data elements, WS 364 value "
        "sets); failing rows go to `quarantine` with every reason.",
        check_specs=[dg.AssetCheckSpec("conservation", asset=key, blocking=True,
                                       description="rows in = standardized + quarantined + "
                                       "deduplicated, per tenant")],
    )
    def _asset(context: dg.AssetExecutionContext, hisx: HisxResource) -> dg.MaterializeResult:
        now = datetime.now()
        with hisx.warehouse() as wh:
            stats = flow.standardize_tenants(wh, dataset, hisx.tenants(), now=now)
        ok = all(s.conserved for s in stats)
        per = {s.tenant: {"in": s.rows_in, "std": s.standardized, "quarantined": s.quarantined,
                          "dedup": s.deduplicated} for s in stats}
        totals = {k: sum(getattr(s, k) for s in stats)
                  for k in ("rows_in", "standardized", "quarantined", "deduplicated")}
        return dg.MaterializeResult(
            metadata={**totals, "per_tenant": per},
            check_results=[dg.AssetCheckResult(check_name="conservation", passed=ok,
                                               metadata={"per_tenant": per})],
        )

    return _asset


@dg.multi_asset(
    specs=[
        dg.AssetSpec(["marts", m], group_name=MART_GROUP, kinds={"sql"},
                     deps=[dg.AssetKey(["std", d]) for d in MART_DEPS[m]],
                     description=f"Mart `{m}`: re-loaded per tenant for the business days "
                     "that changed (delete-range-then-insert in one transaction).")
        for m in MARTS
    ],
)
def marts_assets(context: dg.AssetExecutionContext, hisx: HisxResource):
    with hisx.warehouse() as wh:
        done = flow.build_marts(wh)
        for m in MARTS:
            rows = int(wh.scalar(f"SELECT count(*) FROM {m}") or 0)
            yield dg.MaterializeResult(
                asset_key=["marts", m],
                metadata={"rows": rows,
                          "reloaded_ranges": {t: [f"{a}..{b}" for a, b in r]
                                              for t, r in done.items()}},
            )


@dg.asset(
    key=["feeds", "regional_platform"],
    group_name=FEED_GROUP,
    kinds={"kafka"},
    deps=[dg.AssetKey(["std", d]) for d in DATASETS],
    description="Push feed to the regional health information platform: sends the pending "
    "messages of the feed ledger (outbox) with acks=all and idempotence; resumes after an "
    "outage, never re-sends what is acked. Without a broker, writes the local outbox.",
)
def feeds_publish(context: dg.AssetExecutionContext, hisx: HisxResource) -> dg.MaterializeResult:
    with hisx.warehouse() as wh:
        stats = feeds.publish(wh, hisx.settings())
        ledger = feeds.status(wh)
    if not stats.ok:
        raise dg.Failure(f"feed publish stopped: {stats.error}",
                         metadata={k: v for k, v in stats.as_dict().items() if k != "topics"})
    return dg.MaterializeResult(metadata={**stats.as_dict(),
                                          "ledger": dg.MetadataValue.md(ledger.to_markdown()
                                                                        if len(ledger) else "")})


ods_assets = [_ods_asset(t.name) for t in TABLES]
std_assets = [_std_asset(d) for d in DATASETS]
all_assets = [*ods_assets, *std_assets, marts_assets, feeds_publish]
