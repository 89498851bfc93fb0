"""Isolation through every interface: for every REST route (enumerated from the app, so new
routes are covered automatically) and every SOAP operation, a center key asking for another
center's data is denied with 403 and the denial is audited."""

from __future__ import annotations

import datetime as dt
import inspect
import typing

import pytest
from fastapi.routing import APIRoute

from hisx.api import soap

from .conftest import contracted_person, soap_envelope

#: routes that touch no tenant's data (catalog metadata only); anything else must take a
#: ``center`` or a ``person_key`` and is checked below
TENANT_FREE = {"/api/v1/marts", "/api/v1/queries"}


def api_routes(app) -> list[APIRoute]:
    """Every REST route the app serves; checked against the OpenAPI so none is missed."""
    routes = [r for r in app.state.rest_router.routes if isinstance(r, APIRoute)]
    assert {r.path for r in routes} == set(app.openapi()["paths"])
    return routes


def _sample(annotation) -> str:
    """A valid value for a required parameter of this type."""
    args = typing.get_args(annotation) or (annotation,)
    t = args[0]
    if t is dt.date:
        return "2026-08-01"
    if t is int:
        return "5"
    return "x"


def cross_tenant_request(api, route: APIRoute) -> tuple[str, dict[str, str]] | None:
    names = {p.name for p in route.dependant.query_params}
    paths = {p.name for p in route.dependant.path_params}
    path, params = route.path, {}
    if "person_key" in paths:
        path = path.replace("{person_key}",
                            contracted_person(api, api.other, not_at=api.mine))
    elif "center" in names:
        params["center"] = api.other
    else:
        return None
    for p in route.dependant.query_params:
        if p.field_info.is_required() and p.name not in params:
            params[p.name] = _sample(p.field_info.annotation)
    return path, params


def test_every_route_is_classified(api) -> None:
    free = {r.path for r in api_routes(api.client.app) if cross_tenant_request(api, r) is None}
    assert free == TENANT_FREE


def test_routes_enumerated_cover_marts_records_queries(api) -> None:
    paths = {r.path for r in api_routes(api.client.app)}
    assert "/api/v1/marts/mart_visits_monthly" in paths
    assert "/api/v1/records/outpatient_visit" in paths
    assert "/api/v1/queries/top_drugs" in paths
    assert len(paths) > 24 + 9


def test_center_key_denied_other_center_on_every_route(api) -> None:
    checked = 0
    for route in api_routes(api.client.app):
        req = cross_tenant_request(api, route)
        if req is None:
            continue
        path, params = req
        before = len(api.store.audit_rows(outcome="denied", limit=100000))
        r = api.client.get(path, params=params, headers=api.h(api.center_key))
        assert r.status_code == 403, (route.path, r.status_code, r.text[:300])
        err = r.json()["error"]
        assert err["code"] in ("tenant_forbidden", "not_contracted"), (route.path, err)
        denied = api.store.audit_rows(outcome="denied", limit=100000)
        assert len(denied) == before + 1, route.path
        last = denied[0]
        assert last["endpoint"] == route.path and last["status"] == 403
        assert last["key_id"] and last["tenant"] == api.mine
        assert last["person_keys"] == [] and last["record_keys"] == []
        checked += 1
    assert checked == len(api_routes(api.client.app)) - len(TENANT_FREE)


def test_same_routes_allowed_for_own_center(api) -> None:
    """The denial above is about the tenant, not a broken route: own center gets 200."""
    for route in api_routes(api.client.app):
        req = cross_tenant_request(api, route)
        if req is None:
            continue
        path, params = req
        if "center" in params:
            params["center"] = api.mine
        else:
            path = route.path.replace("{person_key}", contracted_person(api, api.mine))
        r = api.client.get(path, params=params, headers=api.h(api.center_key))
        assert r.status_code == 200, (route.path, r.status_code, r.text[:300])


SOAP_REQUIRED = {"QueryMart": "<h:mart>mart_visits_monthly</h:mart>",
                 "QueryRecords": "<h:dataset>outpatient_visit</h:dataset>"}


@pytest.mark.parametrize("op", list(soap.OPERATIONS))
def test_soap_center_key_denied_other_center(api, op) -> None:
    assert set(inspect.signature(soap.OPERATIONS[op]).parameters) == {"call"}
    body = soap_envelope(op, SOAP_REQUIRED.get(op, "") + f"<h:center>{api.other}</h:center>")
    before = len(api.store.audit_rows(outcome="denied", limit=100000))
    r = api.client.post("/ws", content=body, headers={**api.h(api.center_key),
                                                      "Content-Type": "text/xml"})
    assert r.status_code == 403, r.text
    assert "<faultcode>soap:Client</faultcode>" in r.text and "tenant_forbidden" in r.text
    denied = api.store.audit_rows(outcome="denied", limit=100000)
    assert len(denied) == before + 1
    assert denied[0]["interface"] == "soap" and denied[0]["endpoint"] == op
    assert denied[0]["params"]["center"] == api.other
    ok = api.client.post("/ws", content=body.replace(api.other, api.mine),
                         headers={**api.h(api.center_key), "Content-Type": "text/xml"})
    assert ok.status_code == 200, ok.text[:500]


def test_region_key_reads_every_center(api) -> None:
    r = api.client.get("/api/v1/marts/mart_visits_monthly", headers=api.h(api.region_key))
    assert r.status_code == 200
    assert {i["tenant"] for i in r.json()["items"]} == set(api.centers)


def test_center_key_default_is_own_center(api) -> None:
    for path in ("/api/v1/marts/mart_visits_daily", "/api/v1/records/charge", "/api/v1/centers",
                 "/api/v1/quality", "/api/v1/feeds/status", "/api/v1/queries/top_drugs"):
        params = {"month": "2026-08-01"} if "top_drugs" in path else {}
        r = api.client.get(path, params=params, headers=api.h(api.center_key))
        assert r.status_code == 200, (path, r.text[:200])
        items = r.json()["items"]
        assert items and {i["tenant"] for i in items} == {api.mine}, path
