"""The reads behind every interface (REST, SOAP, named queries): parameterized SQL only.

Each function takes a request :class:`~hisx.api.db.Session` and an already *authorized*
tenant (``None`` = every center, only ever passed for the region key). Identifiers (mart
and dataset names) come from the catalog, never from the caller; values are bound.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pyarrow as pa

from hisx.api import catalog
from hisx.api.auth import ApiError
from hisx.api.db import Session
from hisx.connectors.warehouse import ident

ACTIVE_CONTRACT = "1"  # value set contract_status: 1 = active (有效)


def _where(tenant: str | None, date_col: str, date_from: date | None,
           date_to: date | None) -> tuple[list[str], dict[str, Any]]:
    where, params = [], {}
    if tenant is not None:
        where.append("tenant = :tenant")
        params["tenant"] = tenant
    if date_from is not None:
        where.append(f"{date_col} >= :date_from")
        params["date_from"] = date_from
    if date_to is not None:
        where.append(f"{date_col} <= :date_to")
        params["date_to"] = date_to
    return where, params


def _page(sess: Session, sql: str, params: dict[str, Any], limit: int,
          offset: int) -> tuple[pa.Table, int | None]:
    """One page plus the next offset (fetches one row more to know if there is one)."""
    t = sess.query(f"{sql} LIMIT :_limit OFFSET :_offset",
                   {**params, "_limit": limit + 1, "_offset": offset})
    if t.num_rows > limit:
        return t.slice(0, limit), offset + limit
    return t, None


def query_mart(sess: Session, name: str, tenant: str | None, date_from: date | None,
               date_to: date | None, filters: dict[str, Any], limit: int,
               offset: int) -> tuple[pa.Table, int | None]:
    mart = catalog.marts()[name]
    where, params = _where(tenant, "period_start", date_from, date_to)
    allowed = {c.name for c in mart.filters}
    for i, (col, value) in enumerate(sorted(filters.items())):
        if col not in allowed:  # pragma: no cover - routes only pass declared filters
            raise ApiError(400, "bad_filter", f"{name} has no filter {col!r}")
        where.append(f"{ident(col)} = :f{i}")
        params[f"f{i}"] = value
    cols = ", ".join(ident(c) for c in mart.column_names)
    sql = (f"SELECT {cols} FROM {ident(name)}"
           + (" WHERE " + " AND ".join(where) if where else "") + f" ORDER BY {mart.order_by}")
    return _page(sess, sql, params, limit, offset)


def query_records(sess: Session, dataset: str, tenant: str | None, date_from: date | None,
                  date_to: date | None, limit: int, offset: int) -> tuple[pa.Table, int | None]:
    cols = list(catalog.record_schema(dataset)["properties"])
    where, params = _where(tenant, "business_date", date_from, date_to)
    sql = (f"SELECT {', '.join(ident(c) for c in cols)} FROM {ident('std_' + dataset)}"
           + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY tenant, business_date, source_key")
    return _page(sess, sql, params, limit, offset)


def centers(sess: Session, tenant: str | None) -> pa.Table:
    where, params = _where(tenant, "period_start", None, None)
    return sess.query("SELECT tenant, center_name, division_code, his_vendor, "
                      "period_start AS first_business_day FROM dim_center"
                      + (" WHERE " + " AND ".join(where) if where else "")
                      + " ORDER BY tenant", params)


def quality(sess: Session, tenant: str | None, date_from: date | None,
            date_to: date | None) -> pa.Table:
    """Per center and dataset: DQ counts over the range and freshness (last load, last
    business day seen, hours since the last load)."""
    where, params = _where(tenant, "period_start", date_from, date_to)
    w = (" WHERE " + " AND ".join(where)) if where else ""
    lw = " WHERE tenant = :tenant" if tenant is not None else ""
    return sess.query(
        "WITH dq AS (SELECT tenant, dataset, SUM(rows_in) AS rows_in, "
        "SUM(standardized) AS standardized, SUM(quarantined) AS quarantined, "
        "SUM(late_rows) AS late_rows, MAX(period_start) AS last_business_day, "
        f"MAX(max_delay_hours) AS max_delay_hours FROM mart_dq_daily{w} "
        "GROUP BY tenant, dataset), "
        f"ld AS (SELECT tenant, dataset, MAX(logged_at) AS last_load FROM std_log{lw} "
        "GROUP BY tenant, dataset) "
        "SELECT dq.tenant, dq.dataset, dq.rows_in, dq.standardized, dq.quarantined, "
        "dq.late_rows, CAST(dq.standardized AS DOUBLE PRECISION) / NULLIF(dq.rows_in, 0) "
        "AS standardized_rate, dq.max_delay_hours, dq.last_business_day, ld.last_load "
        "FROM dq LEFT JOIN ld ON ld.tenant = dq.tenant AND ld.dataset = dq.dataset "
        "ORDER BY dq.tenant, dq.dataset", params)


def feed_status(sess: Session, tenant: str | None, now: datetime | None = None) -> pa.Table:
    """Ledger counts per dataset, center and state, with the lag of what is not yet acked
    (seconds since the oldest pending/sent message was enqueued)."""
    params: dict[str, Any] = {"now": now or datetime.now()}
    w = ""
    if tenant is not None:
        w = " WHERE tenant = :tenant"
        params["tenant"] = tenant
    try:
        return sess.query(
            "SELECT dataset, tenant, state, count(*) AS messages, "
            "min(business_time) AS first_event, max(business_time) AS last_event, "
            "max(acked_at) AS last_acked, max(attempts) AS max_attempts, "
            "CASE WHEN state IN ('pending', 'sent') THEN "
            "CAST(EXTRACT(EPOCH FROM (CAST(:now AS TIMESTAMP) - min(enqueued_at))) AS BIGINT) "
            f"END AS lag_seconds FROM feed_ledger{w} GROUP BY dataset, tenant, state "
            "ORDER BY dataset, tenant, state", params)
    except Exception as exc:  # no ledger yet: feeds never ran
        if "feed_ledger" in str(exc):
            return pa.table({c: pa.array([], pa.string()) for c in FEED_COLUMNS})
        raise


FEED_COLUMNS = ["dataset", "tenant", "state", "messages", "first_event", "last_event",
                "last_acked", "max_attempts", "lag_seconds"]


def has_active_contract(sess: Session, tenant: str, person_key: str, on: date) -> bool:
    n = sess.query(
        "SELECT count(*) AS n FROM std_family_contract WHERE tenant = :tenant "
        "AND person_key = :pk AND status_code = :active AND start_date <= :on "
        "AND end_date >= :on", {"tenant": tenant, "pk": person_key,
                                "active": ACTIVE_CONTRACT, "on": on}).column(0)[0].as_py()
    return bool(n)


def person_visits(sess: Session, person_key: str, date_from: date | None,
                  date_to: date | None) -> pa.Table:
    """A resident's visits at every center, with the primary diagnosis (authorization is
    the caller's: see :func:`has_active_contract`)."""
    params: dict[str, Any] = {"pk": person_key}
    extra = ""
    if date_from is not None:
        extra += " AND v.business_date >= :date_from"
        params["date_from"] = date_from
    if date_to is not None:
        extra += " AND v.business_date <= :date_to"
        params["date_to"] = date_to
    return sess.query(
        "SELECT v.tenant, c.center_name, v.source_key, v.visit_no, v.business_time, "
        "v.business_date, v.dept_code, v.visit_type_code, v.first_visit_code, v.status_code, "
        "v.is_deleted, d.icd_code AS primary_icd_code, d.disease_group "
        "FROM std_outpatient_visit v "
        "LEFT JOIN dim_center c ON c.tenant = v.tenant "
        "LEFT JOIN std_diagnosis d ON d.tenant = v.tenant AND d.visit_source_key = v.source_key "
        "AND d.is_primary "
        f"WHERE v.person_key = :pk{extra} "
        "ORDER BY v.business_time, v.tenant, v.source_key, d.icd_code", params)


PERSON_VISIT_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "tenant": {"type": "string"}, "center_name": {"type": ["string", "null"]},
        "source_key": {"type": "integer"}, "visit_no": {"type": "string"},
        "business_time": {"type": "string", "format": "date-time"},
        "business_date": {"type": "string", "format": "date"},
        "dept_code": {"type": "string"}, "visit_type_code": {"type": "string"},
        "first_visit_code": {"type": "string"}, "status_code": {"type": "string"},
        "is_deleted": {"type": "boolean"},
        "primary_icd_code": {"type": ["string", "null"]},
        "disease_group": {"type": ["string", "null"]},
    },
}
PERSON_VISIT_SCHEMA["required"] = list(PERSON_VISIT_SCHEMA["properties"])
