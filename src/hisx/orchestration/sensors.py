"""Automation: one incremental sensor per source, replica health, nightly schedules.

The source sensor's cursor is the source's row-version high-water mark per table and center
(JSON), never wall-clock time: it launches an ``ingest`` run only for the centers whose mark
moved, with a ``run_key`` derived from those marks, so a repeated tick launches nothing.
Late rows (an offline center's backlog) move the mark like any other rows: the run re-loads
only the business days they dirty.
"""


import hashlib
import json
import os

import dagster as dg

from hisx.marts.runner import MARTS
from hisx.orchestration.assets import SOURCE_TAG, UPTO_TAG, data_dictionary
from hisx.orchestration.partitions import CENTER
from hisx.orchestration.resources import HisxResource
from hisx.orchestration.sources import (
    NoReader,
    Source,
    configured_sources,
    evaluate_health,
    high_waters,
    read_health,
    write_health,
)
from hisx.pipelines import deletes, flow, reconcile

DAGSTER_RUNNING = dg.DefaultSensorStatus.RUNNING


def run_tags(source: str, center: str | None = None) -> dict[str, str]:
    """Tags the deployment's run queue limits on (deploy/dagster.yaml): per source, per
    warehouse (DuckDB has one writer), per center."""
    tags = {SOURCE_TAG: source, "hisx/warehouse": "main"}
    return {**tags, "hisx/center": center} if center else tags


def _executor() -> dg.ExecutorDefinition:
    """In-process by default: DuckDB has a single writer, so parallel step processes would
    fight for its lock. ``HISX_EXECUTOR=multiprocess`` for a PostgreSQL warehouse."""
    if os.environ.get("HISX_EXECUTOR", "in_process") == "multiprocess":
        return dg.multiprocess_executor
    return dg.in_process_executor


#: The operators' job: extract → standardize → marts → feeds for the selected centers.
ingest_job = dg.define_asset_job(
    "ingest", selection=dg.AssetSelection.groups("ods", "std", "marts", "feeds"),
    executor_def=_executor(), tags={"hisx/warehouse": "main"},
    description="Per center: extract the rows after the cursor, standardize the pending loads, "
    "re-load the marts' dirty business days, publish the feed outbox. Late rows of an offline "
    "center take the same path and touch only the days they belong to.")
dictionary_job = dg.define_asset_job("data_dictionary", selection=[data_dictionary.key])


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _since(prev: dict[str, dict[str, int]], centers: list[str]) -> dict[str, int]:
    """Per table, the lowest previous non-zero mark, for tables whose previous marks cover every
    center (a center never seen needs the full scan that finds its old rows; 0 = it had none,
    and a new row's version is above every mark the source had then)."""
    out = {}
    for t, m in prev.items():
        if centers and all(c in m for c in centers):
            seen = [m[c] for c in centers if m[c] > 0]
            if seen:
                out[t] = min(seen)
    return out


def source_tick(src: Source, cursor: str | None, instance: dg.DagsterInstance,
                settings=None) -> dg.SensorResult | dg.SkipReason:
    """One evaluation of a source sensor: reads the source's marks, adds new centers as
    partitions (so a center needs configuration, not code), requests runs for changed ones."""
    health = read_health(src.name, settings)
    if health.get("paused"):
        return dg.SkipReason(f"source {src.name} paused: {health.get('reason')}")
    prev = json.loads(cursor) if cursor else {}
    try:
        with src.reader(settings) as (reader, _where):
            centers = [t.org_code for t in src.tenants(reader)]
            marks = high_waters(reader, src.tables(), since=_since(prev, centers))
    except NoReader as e:  # the health sensor pauses the source if it stays so (wait)
        return dg.SkipReason(str(e))
    runs = []
    for c in centers:
        mine = {t: m[c] for t, m in marks.items() if c in m}
        if any(v > prev.get(t, {}).get(c, 0) for t, v in mine.items()):
            runs.append(dg.RunRequest(
                partition_key=c, run_key=f"{src.name}:{c}:{_digest(mine)}",
                tags={**run_tags(src.name, c), UPTO_TAG: json.dumps(mine)}))
    since = _since(prev, centers)
    merged = {t: {**({} if t in since else dict.fromkeys(centers, 0)), **prev.get(t, {}), **m}
              for t, m in marks.items()}
    known = set(instance.get_dynamic_partitions(CENTER.name))
    new = [c for c in centers if c not in known]
    if new:  # before the run requests that name them
        instance.add_dynamic_partitions(CENTER.name, new)
    return dg.SensorResult(run_requests=runs, cursor=json.dumps(merged, sort_keys=True))


def source_sensor(src: Source) -> dg.SensorDefinition:
    @dg.sensor(name=f"source_{src.name}", job=ingest_job, minimum_interval_seconds=60,
               default_status=DAGSTER_RUNNING,
               description=f"Launches extraction for the centers of source `{src.name}` whose "
               "row-version high-water mark moved (cursor = marks per table × center).")
    def _sensor(context: dg.SensorEvaluationContext):
        return source_tick(src, context.cursor, context.instance)

    return _sensor


def health_sensor(src: Source) -> dg.SensorDefinition:
    @dg.sensor(name=f"replica_health_{src.name}", minimum_interval_seconds=30,
               default_status=DAGSTER_RUNNING,
               description=f"Checks the replicas of `{src.name}`; when all are unhealthy and "
               "the policy is `wait`, pauses its source sensor until one recovers.")
    def _sensor(context: dg.SensorEvaluationContext):
        state = evaluate_health(src)
        write_health(state)
        context.update_cursor(json.dumps(state))
        return dg.SkipReason(("PAUSED: " if state["paused"] else "healthy: ")
                             + (state["reason"] or ", ".join(
                                 f"{r['name']}={'ok' if r['healthy'] else 'down'}"
                                 for r in state["replicas"])))

    return _sensor


def _reconciled(src: Source) -> tuple[list[str], dict]:
    """Tables reconciled for a source, and their source tables (schema-qualified)."""
    names = [t for t in reconcile.RECONCILED if src.cfg is None or t in src.cfg.tables]
    return names, ({n: src.cfg.table(n) for n in names} if src.cfg is not None else {})


def reconcile_source(src: Source, wh, settings=None) -> dict:
    """Whole-history reconciliation of one source, its hard deletes propagated (ODS, std,
    quarantine, dirty mart days re-loaded): {diffs, removed, remaining, marts}."""
    names, tables = _reconciled(src)
    sql_names = {n: t.fullname for n, t in tables.items()}
    with src.reader(settings) as (reader, _where):
        centers = [t.org_code for t in src.tenants(reader)]
        diffs = reconcile.reconcile(reader, wh, src.name, centers, names, table_sql=sql_names)
        removed = deletes.propagate(reader, wh, src.name, diffs, tables_sql=tables)
        touched = sorted({d.tenant for d in diffs})
        remaining = (reconcile.reconcile(reader, wh, src.name, touched, names, log=False,
                                         table_sql=sql_names) if touched else [])
    reloaded = flow.build_marts(wh, tenants=sorted({r.tenant for r in removed})) \
        if removed else {}
    return {"diffs": diffs, "removed": removed, "remaining": remaining, "marts": reloaded}


def _deleted_events(src: Source, out: dict) -> list[dg.AssetMaterialization]:
    """Materializations of the center partitions a hard delete changed (ods, std, marts)."""
    from hisx.pipelines.standardize import DATASETS

    per: dict = {}
    for r in out["removed"]:
        d = per.setdefault((r.table, r.tenant), {"ods": 0, "std": 0, "quarantine": 0})
        d["ods"] += r.ods_rows
        d["std"] += r.std_rows
        d["quarantine"] += r.quarantine_rows
    events = []
    for (table, center), n in sorted(per.items()):
        md = {"source": src.name, "hard_deletes": n, "reason": "nightly reconciliation"}
        events.append(dg.AssetMaterialization(["ods", table], partition=center, metadata=md))
        events += [dg.AssetMaterialization(["std", ds], partition=center, metadata=md)
                   for ds, spec in DATASETS.items() if spec.source_table == table]
    for center, ranges in sorted(out["marts"].items()):
        md = {"reloaded_ranges": [f"{a}..{b}" for a, b in ranges],
              "reason": "hard deletes (nightly reconciliation)"}
        events += [dg.AssetMaterialization(["marts", m], partition=center, metadata=md)
                   for m in MARTS]
    return events


@dg.op(retry_policy=dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL,
                                   jitter=dg.Jitter.PLUS_MINUS))
def reconcile_all(context: dg.OpExecutionContext, hisx: HisxResource):
    """Whole-history reconciliation per source × center × business day. Rows deleted at the
    source are removed from ODS, std and quarantine and their mart days re-loaded
    (``delete_log``); any other difference fails the run (``reconcile_log``)."""
    remaining = 0
    for src in configured_sources(hisx.settings()):
        with hisx.warehouse() as wh:
            out = reconcile_source(src, wh, hisx.settings())
        removed = sum(r.ods_rows for r in out["removed"])
        context.log.info(f"{src.name}: {len(out['diffs'])} differing center-days, {removed} "
                         f"hard-deleted rows removed, {len(out['remaining'])} still differ")
        yield from _deleted_events(src, out)
        remaining += len(out["remaining"])
        for d in out["remaining"][:50]:
            context.log.warning(f"differs: {d}")
    if remaining:
        raise dg.Failure(f"{remaining} center-days differ between source and ODS beyond hard "
                         "deletes (reconcile_log)", allow_retries=False)  # not transient
    yield dg.Output(None)


@dg.job(description="Nightly reconciliation of every center × business day with the source.")
def nightly_reconciliation():
    reconcile_all()


schedules = [
    dg.ScheduleDefinition(job=nightly_reconciliation, cron_schedule="0 2 * * *",
                          execution_timezone="Asia/Shanghai",
                          default_status=dg.DefaultScheduleStatus.RUNNING),
    dg.ScheduleDefinition(job=dictionary_job, cron_schedule="30 2 * * *",
                          execution_timezone="Asia/Shanghai",
                          default_status=dg.DefaultScheduleStatus.RUNNING),
]


def sensors() -> list[dg.SensorDefinition]:
    srcs = configured_sources()
    return [*(source_sensor(s) for s in srcs), *(health_sensor(s) for s in srcs)]
