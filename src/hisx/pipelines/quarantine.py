"""Quarantine: list, report and replay the rows that failed standardization.

A row stays in ``quarantine`` (original values, every reason) until a map or rule fix makes it
pass; ``replay`` then re-standardizes the current ODS version of each quarantined row, moves
the ones that pass into ``std_<dataset>`` exactly once (with their feed messages and dirty
mart days, like any standardization) and leaves the others untouched. Counts stay conserved:
replayed = moved + still quarantined (+ deduplicated); a second replay changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from hisx.connectors.warehouse import Warehouse
from hisx.pipelines import flow, ods, std_batches
from hisx.pipelines.std_tables import QUARANTINE_DDL


@dataclass
class ReplayStats:
    dataset: str
    tenant: str
    replayed: int = 0
    moved: int = 0
    still_quarantined: int = 0
    deduplicated: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def conserved(self) -> bool:
        return self.replayed == self.moved + self.still_quarantined + self.deduplicated


def list_rows(wh: Warehouse, dataset: str | None = None, tenant: str | None = None,
              limit: int = 100) -> pd.DataFrame:
    """Quarantined rows, newest first (without the original row: it holds personal data)."""
    wh.execute(QUARANTINE_DDL)
    return wh.query_df(
        "SELECT dataset, tenant, source_table, source_key, row_version, reasons, load_id, "
        "quarantined_at FROM quarantine WHERE (:d IS NULL OR dataset = :d) AND "
        "(:t IS NULL OR tenant = :t) ORDER BY quarantined_at DESC, source_key LIMIT :n",
        {"d": dataset, "t": tenant, "n": int(limit)},
    )


def _split_reason(reason: str) -> tuple[str, str, str]:
    parts = reason.split(":", 2)
    return (parts + ["", ""])[:3]  # kind, field, value


def reason_counts(wh: Warehouse, dataset: str | None = None,
                  tenant: str | None = None) -> pd.DataFrame:
    """Rows per (dataset, tenant, reason kind:field)."""
    q = list_rows(wh, dataset, tenant, limit=10**9)
    if q.empty:
        return pd.DataFrame(columns=["dataset", "tenant", "reason", "rows"])
    q["reason"] = q["reasons"].map(
        lambda s: sorted({":".join(_split_reason(r)[:2]) for r in json.loads(s)}))
    q = q.explode("reason")
    return (q.groupby(["dataset", "tenant", "reason"]).size().rename("rows").reset_index()
            .sort_values(["dataset", "tenant", "rows"], ascending=[True, True, False]))


def unmapped_report(wh: Warehouse, tenant: str | None = None) -> pd.DataFrame:
    """Per center: every unmapped local code with its count and first/last seen, so a person
    can extend the center's map."""
    q = wh.query_df(
        "SELECT dataset, tenant, reasons, quarantined_at FROM quarantine "
        "WHERE (:t IS NULL OR tenant = :t)", {"t": tenant})
    cols = ["tenant", "dataset", "field", "code", "rows", "first_seen", "last_seen"]
    if q.empty:
        return pd.DataFrame(columns=cols)
    q["r"] = q["reasons"].map(json.loads)
    q = q.explode("r")
    q = q[q["r"].astype(str).str.startswith("unmapped:")]
    if q.empty:
        return pd.DataFrame(columns=cols)
    parts = q["r"].map(_split_reason)
    q["field"] = parts.map(lambda p: p[1])
    q["code"] = parts.map(lambda p: p[2])
    out = (q.groupby(["tenant", "dataset", "field", "code"])
           .agg(rows=("r", "size"), first_seen=("quarantined_at", "min"),
                last_seen=("quarantined_at", "max")).reset_index())
    return out.sort_values(["tenant", "rows"], ascending=[True, False])[cols]


def _refresh_reasons(wh: Warehouse, dataset: str, tenant: str, still: pd.DataFrame) -> None:
    """Rows that still fail keep their quarantine row (time, load) but get today's reasons."""
    if still.empty:
        return
    import pyarrow as pa

    new = pa.table({
        "source_key": pa.array(still["source_key"].astype("int64").tolist(), pa.int64()),
        "reasons": pa.array([json.dumps(list(r), ensure_ascii=False) for r in still["reasons"]],
                            pa.string())})
    with wh.transaction():
        wh.execute("DROP TABLE IF EXISTS stage_reasons")
        wh.execute("CREATE TEMPORARY TABLE stage_reasons (source_key BIGINT, reasons TEXT)")
        wh.load_arrow("stage_reasons", new)
        wh.execute("UPDATE quarantine SET reasons = s.reasons FROM stage_reasons s WHERE "
                   "quarantine.dataset = :d AND quarantine.tenant = :t AND "
                   "quarantine.source_key = s.source_key AND quarantine.reasons <> s.reasons",
                   {"d": dataset, "t": tenant})
        wh.execute("DROP TABLE stage_reasons")


def replay(wh: Warehouse, dataset: str, tenant: flow.Tenant, *,
           now: datetime | None = None) -> ReplayStats:
    """Re-standardize the quarantined rows of ``dataset`` for ``tenant`` (see module doc)."""
    from hisx.pipelines.standardize import DATASETS
    from hisx.standards.datasets import load_schema

    spec = DATASETS[dataset]
    stats = ReplayStats(dataset, tenant.org_code)
    wh.execute(QUARANTINE_DDL)
    table = ods.ods_name(spec.source_table)
    df = wh.query_df(
        f"SELECT * FROM {table} WHERE org_code = :t AND {spec.pk} IN (SELECT source_key FROM "
        "quarantine WHERE dataset = :d AND tenant = :t)", {"t": tenant.org_code, "d": dataset})
    if df.empty:
        return stats
    df = df.drop(columns=["_load_id", "_loaded_at"])
    load_id = "replay-" + flow.new_load_id()
    res, ledger = std_batches.compute(dict(
        dataset=dataset, df=df, tenant=tenant.org_code, vendor=tenant.vendor, load_id=load_id,
        now=now or datetime.now(),
        person_keys=(flow.person_keys(wh, tenant.org_code, df["patient_id"])
                     if "patient_id" in df else None),
        existing_keys=std_batches.existing_keys(wh, spec, df)))
    stats.replayed = len(df)
    stats.moved = len(res.standardized)
    stats.deduplicated = int(res.deduplicated)
    stats.still_quarantined = len(res.quarantined)
    for reasons in res.quarantined.get("reasons", []):
        for r in reasons:
            k = ":".join(_split_reason(str(r))[:2])
            stats.reasons[k] = stats.reasons.get(k, 0) + 1
    if not stats.conserved:
        raise RuntimeError(f"replay would break conservation: {stats}")
    _refresh_reasons(wh, dataset, tenant.org_code, res.quarantined)
    if stats.moved or stats.deduplicated:
        # only the rows that changed state are rewritten; the rest keep their quarantine row
        keep = set(res.quarantined["source_key"].astype("int64")) if len(res.quarantined) else set()
        moved_df = df[~df[spec.pk].astype("int64").isin(keep)]
        res.quarantined = res.quarantined.iloc[0:0]
        std_batches.write_group(wh, spec, load_schema(dataset),
                                [{"units": [], "df": moved_df, "load_id": load_id}],
                                [(res, ledger)])
    return stats
