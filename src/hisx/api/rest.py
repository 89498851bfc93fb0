"""REST interface ``/api/v1``: centers, marts, standardized records, person history,
data quality, feed status, named queries, audit. One route per mart, dataset and named query
(generated from the catalog), so the OpenAPI documents every column and every parameter.
"""

from __future__ import annotations

import inspect
import io
import json
from collections.abc import Callable
from datetime import date
from typing import Annotated, Any, Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from hisx.api import catalog, data, queries
from hisx.api.auth import (
    ApiError,
    admit,
    presented_key,
    read_scope,
    require_scope,
    resolve_center,
)
from hisx.api.cache import Cached
from hisx.api.keys import ApiKey

PREFIX = "/api/v1"
CENTER_PATTERN = r"^[A-Za-z0-9_-]{1,40}$"
PAGE_MAX = 10_000
BULK_MAX = 1_000_000
PARQUET = "application/vnd.apache.parquet"

ERROR_SCHEMA = {
    "type": "object", "required": ["error"], "additionalProperties": False,
    "properties": {"error": {
        "type": "object", "required": ["status", "code", "message"],
        "additionalProperties": False,
        "properties": {"status": {"type": "integer"}, "code": {"type": "string"},
                       "message": {"type": "string"}}}},
}


def _err(desc: str) -> dict[str, Any]:
    return {"description": desc, "content": {"application/json": {"schema": ERROR_SCHEMA}}}


ERRORS: dict[int | str, dict[str, Any]] = {
    400: _err("bad request (e.g. a page larger than allowed)"),
    401: _err("missing, unknown or revoked API key"),
    403: _err("scope or tenant violation (audited)"),
    429: _err("rate limit of the key exceeded"),
    503: _err("warehouse busy (DuckDB: the pipeline is writing)"),
}


def _ok(schema: dict[str, Any], desc: str, *, tabular: bool = False) -> dict[int | str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if tabular:
        content["text/csv"] = {"schema": {"type": "string"}}
        content[PARQUET] = {"schema": {"type": "string", "format": "binary"}}
    return {200: {"description": desc, "content": content}}


def _page_schema(item: dict[str, Any], **extra: dict[str, Any]) -> dict[str, Any]:
    props = {"limit": {"type": "integer"}, "offset": {"type": "integer"},
             "next_offset": {"type": ["integer", "null"]},
             "items": {"type": "array", "items": item}, **extra}
    return {"type": "object", "properties": props, "required": list(props),
            "additionalProperties": False}


# -- the authenticated principal ----------------------------------------------------------
async def principal(request: Request,
                    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
                    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
                    ) -> ApiKey:
    """The verified key (401/429 otherwise). On the event loop: a key verified in the last
    ``KEY_CACHE_SECONDS`` costs no thread hop; the key store is asked in the threadpool."""
    st = request.app.state
    presented = presented_key(authorization, x_api_key)
    key = st.key_cache.get(presented) if presented else None
    if presented and key is None:
        key = await run_in_threadpool(st.key_cache.verify, presented)
    key = admit(st.limiter, presented, key)
    request.state.api_key = key
    return key


Key = Annotated[ApiKey, Depends(principal)]
Center = Annotated[str | None, Query(pattern=CENTER_PATTERN,
                                     description="center code (tenant); a center key may "
                                                 "only ask for its own; default: the key's "
                                                 "center, or every center for the region")]
DateFrom = Annotated[date | None, Query(description="first business day (inclusive)")]
DateTo = Annotated[date | None, Query(description="last business day (inclusive)")]
Limit = Annotated[int, Query(ge=1, le=BULK_MAX, description=f"page size (json/csv at most "
                                                            f"{PAGE_MAX}; parquet bulk at most "
                                                            f"{BULK_MAX})")]
Offset = Annotated[int, Query(ge=0, le=2**40)]
Format = Annotated[Literal["json", "csv", "parquet"], Query(description="response format")]


def _tabular(table: pa.Table, fmt: str, envelope: dict[str, Any]) -> Response:
    if fmt == "csv":
        buf = io.BytesIO()
        pacsv.write_csv(catalog.jsonable(table), buf)
        return Response(buf.getvalue(), media_type="text/csv; charset=utf-8",
                        headers=_next_header(envelope))
    if fmt == "parquet":
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        return Response(buf.getvalue(), media_type=PARQUET, headers=_next_header(envelope))
    return _json({**envelope, "items": catalog.rows(table)})


def _next_header(envelope: dict[str, Any]) -> dict[str, str]:
    nxt = envelope.get("next_offset")
    return {"X-Next-Offset": str(nxt)} if nxt is not None else {}


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, ensure_ascii=False, separators=(",", ":")),
                    status_code=status, media_type="application/json")


def _check_limit(limit: int, fmt: str) -> None:
    if fmt != "parquet" and limit > PAGE_MAX:
        raise ApiError(400, "limit_too_large",
                       f"limit {limit} > {PAGE_MAX} for {fmt}; use format=parquet for bulk")


def endpoint_of(request: Request) -> str:
    """The route template (``/api/v1/persons/{person_key}/visits``), for the audit."""
    route = request.scope.get("route")
    return getattr(route, "path", None) or request.url.path


def _audit_read(request: Request, key: ApiKey, table: pa.Table, params: dict[str, Any]) -> None:
    """Audit a person-level read: the person keys and record keys returned."""
    persons = ([p for p in table.column("person_key").to_pylist() if p]
               if "person_key" in table.column_names else [])
    records = (table.column("source_key").to_pylist()
               if "source_key" in table.column_names else [])
    request.app.state.keys.audit(key=key, interface="rest", endpoint=endpoint_of(request),
                                 params=params,
                                 outcome="allowed", status=200, person_keys=persons,
                                 record_keys=records)


async def _shared_read(request: Request, key: tuple[Any, ...],
                       build: Callable[[], Response]) -> Response:
    """A read that is the same for every caller of one tenant (never person-level), through
    the response cache: ``key`` holds the route, the *authorized* tenant and every parameter
    that shapes the body. Authorization happened before; the query runs in the threadpool on
    a miss. The warehouse version is read before the query (see :mod:`hisx.api.cache`)."""
    st = request.app.state
    cache = st.cache
    version = st.reader.version() if cache.enabled else None
    if version is not None:
        hit = cache.get(key, version)
        if hit is not None:
            return Response(hit.body, status_code=hit.status, media_type=hit.media_type,
                            headers=dict(hit.headers))
    resp = await run_in_threadpool(build)
    if version is not None and resp.status_code == 200:
        extra = tuple((k, v) for k, v in resp.headers.items()
                      if k.lower() not in ("content-length", "content-type"))
        cache.put(key, version, Cached(bytes(resp.body), resp.status_code, resp.media_type,
                                       extra))
    return resp


def _with_signature(fn: Callable, extra: list[inspect.Parameter]) -> Callable:
    sig = inspect.signature(fn)
    params = [p for p in sig.parameters.values() if p.kind != p.VAR_KEYWORD] + extra
    fn.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return fn


# -- routes ------------------------------------------------------------------------------------
def build_router() -> APIRouter:
    r = APIRouter(prefix=PREFIX, responses=ERRORS)

    center_item = {"type": "object", "additionalProperties": False,
                   "required": ["tenant", "center_name", "division_code", "his_vendor",
                                "first_business_day"],
                   "properties": {"tenant": {"type": "string"},
                                  "center_name": {"type": ["string", "null"]},
                                  "division_code": {"type": ["string", "null"]},
                                  "his_vendor": {"type": ["string", "null"]},
                                  "first_business_day": {"type": ["string", "null"],
                                                         "format": "date"}}}

    @r.get("/centers", tags=["centers"], summary="Centers the key may read",
           response_class=Response,
           responses=_ok({"type": "object", "required": ["items"], "additionalProperties":
                          False, "properties": {"items": {"type": "array",
                                                          "items": center_item}}}, "centers"))
    async def list_centers(request: Request, key: Key, center: Center = None) -> Response:
        tenant = resolve_center(key, center)

        def build() -> Response:
            with request.app.state.reader.session() as s:
                return _json({"items": catalog.rows(data.centers(s, tenant))})

        return await _shared_read(request, ("/centers", tenant), build)

    mart_list_item = {
        "type": "object", "required": ["name", "description", "person_level", "filters",
                                       "columns"], "additionalProperties": False,
        "properties": {"name": {"type": "string"}, "description": {"type": "string"},
                       "person_level": {"type": "boolean"},
                       "filters": {"type": "array", "items": {"type": "string"}},
                       "columns": {"type": "array", "items": {
                           "type": "object", "required": ["name", "type", "nullable",
                                                          "description"],
                           "properties": {"name": {"type": "string"},
                                          "type": {"type": "string"},
                                          "nullable": {"type": "boolean"},
                                          "description": {"type": "string"}}}}}}

    @r.get("/marts", tags=["marts"], summary="Marts with descriptions from the standard",
           response_class=Response,
           responses=_ok({"type": "object", "required": ["items"], "properties": {
               "items": {"type": "array", "items": mart_list_item}}}, "marts"))
    def list_marts(key: Key) -> Response:
        read_scope(key)
        return _json({"items": [
            {"name": m.name, "description": m.description, "person_level": m.person_level,
             "filters": [c.name for c in m.filters],
             "columns": [{"name": c.name, "type": c.sql_type, "nullable": c.nullable,
                          "description": c.description} for c in m.columns]}
            for m in catalog.marts().values()]})

    for mart in catalog.marts().values():
        _add_mart_route(r, mart)
    for ds in catalog.datasets():
        _add_records_route(r, ds)
    _add_person_route(r)
    _add_status_routes(r)
    _add_query_routes(r)
    _add_audit_route(r)
    return r


def _add_mart_route(r: APIRouter, mart: catalog.Mart) -> None:
    name = mart.name
    endpoint_path = f"/marts/{name}"

    async def query_mart(request: Request, key: Key, center: Center = None,
                         date_from: DateFrom = None, date_to: DateTo = None,
                         limit: Limit = 1000, offset: Offset = 0, format: Format = "json",
                         **filters: Any) -> Response:
        tenant = resolve_center(key, center)
        _check_limit(limit, format)
        given = {k: v for k, v in filters.items() if v is not None}

        def build() -> Response:
            with request.app.state.reader.session() as s:
                table, nxt = data.query_mart(s, name, tenant, date_from, date_to, given,
                                             limit, offset)
            if mart.person_level:  # read and audited on every request, never cached
                _audit_read(request, key, table,
                            {"center": tenant, "date_from": date_from, "date_to": date_to,
                             "limit": limit, "offset": offset, **given})
            return _tabular(table, format, {"mart": name, "center": tenant, "limit": limit,
                                            "offset": offset, "next_offset": nxt})

        if mart.person_level:
            return await run_in_threadpool(build)
        return await _shared_read(request, (endpoint_path, tenant, date_from, date_to, limit,
                                            offset, format, tuple(sorted(given.items()))),
                                  build)

    extra = []
    for c in mart.filters:
        typ = bool | None if c.kind == "boolean" else str | None
        q = Query(description=f"equals: {c.description}",
                  **({"max_length": c.max_length} if c.max_length else {}))
        extra.append(inspect.Parameter(c.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                       annotation=Annotated[typ, q]))
    query_mart.__name__ = f"query_{name}"
    schema = _page_schema(catalog.mart_row_schema(name), mart={"type": "string"},
                          center={"type": ["string", "null"]})
    r.add_api_route(endpoint_path, _with_signature(query_mart, extra), methods=["GET"],
                    tags=["marts"], summary=f"Query {name}",
                    description=mart.description, response_class=Response,
                    responses=_ok(schema, f"rows of {name}", tabular=True))


def _add_records_route(r: APIRouter, ds: str) -> None:
    path = f"/records/{ds}"

    def records(request: Request, key: Key, center: Center = None,
                date_from: DateFrom = None, date_to: DateTo = None, limit: Limit = 1000,
                offset: Offset = 0, format: Format = "json") -> Response:
        tenant = resolve_center(key, center)
        _check_limit(limit, format)
        with request.app.state.reader.session() as s:
            table, nxt = data.query_records(s, ds, tenant, date_from, date_to, limit, offset)
        _audit_read(request, key, table,
                    {"center": tenant, "date_from": date_from, "date_to": date_to,
                     "limit": limit, "offset": offset})
        return _tabular(table, format, {"dataset": ds, "center": tenant, "limit": limit,
                                        "offset": offset, "next_offset": nxt})

    records.__name__ = f"records_{ds}"
    schema = _page_schema(catalog.record_schema(ds), dataset={"type": "string"},
                          center={"type": ["string", "null"]})
    r.add_api_route(path, records, methods=["GET"], tags=["records"],
                    summary=f"Standardized {ds} records (the feed contract)",
                    description=catalog.record_schema(ds).get("description", ""),
                    response_class=Response,
                    responses=_ok(schema, f"std_{ds} records, each valid against the "
                                          f"{ds} JSON Schema", tabular=True))


def _add_person_route(r: APIRouter) -> None:
    schema = {"type": "object", "required": ["person_key", "items"],
              "additionalProperties": False,
              "properties": {"person_key": {"type": "string"},
                             "items": {"type": "array", "items": data.PERSON_VISIT_SCHEMA}}}

    @r.get("/persons/{person_key}/visits", tags=["persons"], response_class=Response,
           summary="A resident's visit history across centers (family-doctor team only)",
           description="Needs scope person:read and a center key whose center holds an "
                       "active family-doctor contract with this person. Audited.",
           responses=_ok(schema, "visits at every center"))
    def person_visits(request: Request, key: Key,
                      person_key: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")],
                      date_from: DateFrom = None, date_to: DateTo = None) -> Response:
        require_scope(key, "person:read")
        if key.is_region:
            raise ApiError(403, "not_contracted", "person history is for the family-doctor "
                                                  "team of a contracted center, not the region")
        with request.app.state.reader.session() as s:
            if not data.has_active_contract(s, key.tenant, person_key, date.today()):
                raise ApiError(403, "not_contracted",
                               f"center {key.tenant} holds no active family-doctor contract "
                               "with this person")
            table = data.person_visits(s, person_key, date_from, date_to)
        request.app.state.keys.audit(
            key=key, interface="rest", endpoint=endpoint_of(request),
            params={"person_key": person_key, "date_from": date_from, "date_to": date_to},
            outcome="allowed", status=200, person_keys=[person_key],
            record_keys=[f"{t}:{k}" for t, k in zip(table.column("tenant").to_pylist(),
                                                    table.column("source_key").to_pylist(),
                                                    strict=True)])
        return _json({"person_key": person_key, "items": catalog.rows(table)})


def _nullable(kind: str, fmt: str | None = None) -> dict[str, Any]:
    return {"type": [kind, "null"], **({"format": fmt} if fmt else {})}


QUALITY_ITEM = {
    "type": "object", "additionalProperties": False,
    "properties": {"tenant": {"type": "string"}, "dataset": {"type": "string"},
                   "rows_in": {"type": "integer"}, "standardized": {"type": "integer"},
                   "quarantined": {"type": "integer"}, "late_rows": {"type": "integer"},
                   "standardized_rate": _nullable("number"),
                   "max_delay_hours": _nullable("number"),
                   "last_business_day": _nullable("string", "date"),
                   "last_load": catalog.SERVER_TIME_SCHEMA}}
QUALITY_ITEM["required"] = list(QUALITY_ITEM["properties"])
FEED_ITEM = {
    "type": "object", "additionalProperties": False,
    "properties": {"dataset": {"type": "string"}, "tenant": {"type": "string"},
                   "state": {"type": "string", "enum": ["pending", "sent", "acked", "dead"]},
                   "messages": {"type": "integer"},
                   "first_event": _nullable("string", "date-time"),
                   "last_event": _nullable("string", "date-time"),
                   "last_acked": catalog.SERVER_TIME_SCHEMA,
                   "max_attempts": _nullable("integer"),
                   "lag_seconds": _nullable("integer")}}
FEED_ITEM["required"] = list(FEED_ITEM["properties"])


def _add_status_routes(r: APIRouter) -> None:
    @r.get("/quality", tags=["status"], response_class=Response,
           summary="Data quality and freshness per center and dataset",
           responses=_ok({"type": "object", "required": ["items"], "properties": {
               "items": {"type": "array", "items": QUALITY_ITEM}}}, "quality"))
    async def quality(request: Request, key: Key, center: Center = None,
                      date_from: DateFrom = None, date_to: DateTo = None) -> Response:
        tenant = resolve_center(key, center)

        def build() -> Response:
            with request.app.state.reader.session() as s:
                return _json({"items": catalog.rows(data.quality(s, tenant, date_from,
                                                                 date_to))})

        return await _shared_read(request, ("/quality", tenant, date_from, date_to), build)

    @r.get("/feeds/status", tags=["status"], response_class=Response,
           summary="Push-feed ledger counts and lag per dataset, center and state",
           responses=_ok({"type": "object", "required": ["items"], "properties": {
               "items": {"type": "array", "items": FEED_ITEM}}}, "feed status"))
    def feed_status(request: Request, key: Key, center: Center = None) -> Response:
        tenant = resolve_center(key, center)
        with request.app.state.reader.session() as s:
            return _json({"items": catalog.rows(data.feed_status(s, tenant))})


def _add_query_routes(r: APIRouter) -> None:
    item = {"type": "object", "required": ["name", "description", "params"],
            "properties": {"name": {"type": "string"}, "description": {"type": "string"},
                           "params": {"type": "array", "items": {"type": "object"}}}}

    @r.get("/queries", tags=["queries"], summary="Named SQL queries and their parameters",
           response_class=Response,
           responses=_ok({"type": "object", "required": ["items"], "properties": {
               "items": {"type": "array", "items": item}}}, "named queries"))
    def list_queries(key: Key) -> Response:
        read_scope(key)
        return _json({"items": [
            {"name": q.name, "description": q.description,
             "params": [{"name": p.name, "type": p.kind, "required": p.required,
                         "default": p.default, "description": p.description}
                        for p in q.params]} for q in queries.named_queries().values()]})

    for q in queries.named_queries().values():
        _add_query_route(r, q)


_PY = {"string": str, "integer": int, "number": float, "boolean": bool, "date": date}


def _add_query_route(r: APIRouter, q: queries.NamedQuery) -> None:
    path = f"/queries/{q.name}"

    async def run(request: Request, key: Key, center: Center = None, limit: Annotated[
            int, Query(ge=1, le=PAGE_MAX)] = 1000, offset: Offset = 0,
            **values: Any) -> Response:
        tenant = resolve_center(key, center) or "*"
        bound = queries.bind(q, values, tenant)

        def build() -> Response:
            with request.app.state.reader.session() as s:
                table, nxt = data._page(s, f"SELECT * FROM ({q.sql}) q", bound, limit,
                                        offset)
            return _json({"query": q.name, "center": None if tenant == "*" else tenant,
                          "limit": limit, "offset": offset, "next_offset": nxt,
                          "items": catalog.rows(table)})

        return await _shared_read(request, (path, limit, offset, tuple(sorted(
            bound.items()))), build)

    extra = []
    for p in q.params:
        typ = _PY[p.kind]
        kw: dict[str, Any] = {"description": p.description}
        if p.minimum is not None:
            kw["ge"] = p.minimum
        if p.maximum is not None:
            kw["le"] = p.maximum
        if p.kind == "string":
            kw["max_length"] = 100
        ann = Annotated[typ if p.required else typ | None, Query(**kw)]
        extra.append(inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY,
                                       default=inspect.Parameter.empty if p.required
                                       else p.default, annotation=ann))
    run.__name__ = f"query_{q.name}"
    schema = _page_schema(q.row_schema(), query={"type": "string"},
                          center={"type": ["string", "null"]})
    r.add_api_route(path, _with_signature(run, extra), methods=["GET"], tags=["queries"],
                    summary=f"Named query {q.name}", description=q.description,
                    response_class=Response, responses=_ok(schema, f"rows of {q.name}"))


def _add_audit_route(r: APIRouter) -> None:
    item = {"type": "object", "properties": {
        "seq": {"type": "integer"}, "at": {"type": "string"},
        "key_id": {"type": ["string", "null"]}, "tenant": {"type": ["string", "null"]},
        "interface": {"type": "string"}, "endpoint": {"type": "string"},
        "params": {"type": "object"}, "outcome": {"type": "string"},
        "status": {"type": "integer"}, "reason": {"type": ["string", "null"]},
        "person_keys": {"type": "array"}, "record_keys": {"type": "array"}}}

    @r.get("/audit", tags=["audit"], response_class=Response,
           summary="The audit trail (scope admin; a center sees its own rows)",
           responses=_ok({"type": "object", "required": ["items"], "properties": {
               "items": {"type": "array", "items": item}}}, "audit rows, newest first"))
    def audit(request: Request, key: Key, center: Center = None,
              person_key: Annotated[str | None, Query(pattern=r"^[0-9a-f]{64}$")] = None,
              since: Annotated[date | None, Query()] = None,
              limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 100) -> Response:
        require_scope(key, "admin")
        if not key.is_region and center not in (None, key.tenant):
            raise ApiError(403, "tenant_forbidden",
                           f"key {key.key_id} belongs to center {key.tenant} and may not read "
                           f"the audit of center {center}")
        tenant = center if key.is_region else key.tenant
        rows = request.app.state.keys.audit_rows(
            tenant=tenant, person=person_key, since=since.isoformat() if since else None,
            limit=limit)
        return _json({"items": rows})


def error_response(exc: ApiError) -> JSONResponse:
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after + 0.5)))
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)
