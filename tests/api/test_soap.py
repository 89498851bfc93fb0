"""SOAP 1.1: a zeep client generated from our WSDL calls every operation and gets the same
data as REST; hostile XML (XXE, billion laughs, oversized, too deep) gets faults."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

import pytest
import requests
import zeep
from zeep.helpers import serialize_object

from hisx.api import soap, xmlsafe

from .conftest import soap_envelope


def _norm(v):
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return float(v)
    return v


def _plain(obj) -> dict:
    return {k: _norm(v) for k, v in dict(serialize_object(obj)).items() if v is not None}


def _rest(items: list[dict], drop=()) -> list[dict]:
    return [{k: v for k, v in i.items() if v is not None and k not in drop} for i in items]


@pytest.fixture(scope="module")
def client(api, live_url) -> zeep.Client:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {api.center_key}"
    return zeep.Client(f"{live_url}/ws?wsdl",
                       transport=zeep.Transport(session=session, timeout=30))


def test_wsdl_lists_every_operation(client) -> None:
    ops = set(client.service._binding._operations)
    assert ops == set(soap.OPERATIONS)


def test_query_mart_same_as_rest(api, client) -> None:
    res = client.service.QueryMart(mart="mart_visits_daily", center=api.mine,
                                   dateFrom=dt.date(2026, 8, 1), dateTo=dt.date(2026, 8, 10))
    rows = [_plain(r) for r in res.rows.mart_visits_daily]
    rest = api.client.get("/api/v1/marts/mart_visits_daily", headers=api.h(api.center_key),
                          params={"date_from": "2026-08-01", "date_to": "2026-08-10"}).json()
    assert len(rows) == 10 and rows == _rest(rest["items"])


def test_query_mart_filter_same_as_rest(api, client) -> None:
    res = client.service.QueryMart(mart="mart_drug_monthly", center=api.mine,
                                   filter=[{"name": "drug_name", "value": "连花清瘟胶囊"}])
    rows = [_plain(r) for r in res.rows.mart_drug_monthly]
    rest = api.client.get("/api/v1/marts/mart_drug_monthly", headers=api.h(api.center_key),
                          params={"drug_name": "连花清瘟胶囊"}).json()
    assert rows and rows == _rest(rest["items"])


def test_query_records_same_as_rest(api, client) -> None:
    for ds in ("outpatient_visit", "person", "prescription_item", "family_contract"):
        res = client.service.QueryRecords(dataset=ds, center=api.mine, limit=40, offset=5)
        rows = [_plain(r) for r in getattr(res.records, ds)]
        rest = api.client.get(f"/api/v1/records/{ds}", headers=api.h(api.center_key),
                              params={"limit": 40, "offset": 5}).json()
        assert len(rows) == 40 and rows == _rest(rest["items"]), ds
        assert res.nextOffset == rest["next_offset"] == 45


def test_status_operations_same_as_rest(api, client) -> None:
    feed = [_plain(r) for r in client.service.GetFeedStatus(center=api.mine)]
    rest = api.client.get("/api/v1/feeds/status", headers=api.h(api.center_key)).json()
    assert feed and _rest(feed, ["lag_seconds"]) == _rest(rest["items"], ["lag_seconds"])
    up = [_plain(r) for r in client.service.GetUploadStatus(center=api.mine)]
    rest = api.client.get("/api/v1/quality", headers=api.h(api.center_key)).json()
    assert up and up == _rest(rest["items"])


def test_zeep_denied_is_a_fault(api, client) -> None:
    with pytest.raises(zeep.exceptions.Fault, match="tenant_forbidden"):
        client.service.GetFeedStatus(center=api.other)


def _post(api, body: bytes | str, key: str | None = None):
    return api.client.post("/ws", content=body, headers={
        **api.h(key or api.center_key), "Content-Type": "text/xml"})


def test_xxe_is_refused_without_reading_files(api, tmp_path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    body = ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file://' + str(secret)
            + '">]>' + soap_envelope("GetFeedStatus", "<h:center>&x;</h:center>"))
    r = _post(api, body)
    assert r.status_code == 500 and "dtd_forbidden" in r.text
    assert "TOP-SECRET" not in r.text


def test_billion_laughs_is_refused_fast(api) -> None:
    ents = '<!ENTITY l0 "ha">' + "".join(
        f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
    body = f'<?xml version="1.0"?><!DOCTYPE r [{ents}]>' + soap_envelope(
        "GetFeedStatus", "<h:center>&l9;</h:center>")
    t0 = time.perf_counter()
    r = _post(api, body)
    assert time.perf_counter() - t0 < 2
    assert r.status_code == 500 and "dtd_forbidden" in r.text


def test_oversized_body_is_refused(api) -> None:
    pad = "<!--" + "x" * (xmlsafe.MAX_BYTES + 10) + "-->"
    r = _post(api, soap_envelope("GetFeedStatus", pad))
    assert r.status_code == 413 and "too_large" in r.text


def test_oversized_chunked_body_is_refused(api) -> None:
    def gen():
        yield soap_envelope("GetFeedStatus", "").encode()[:100]
        for _ in range(200):
            yield b"<a>" * 2000
    r = api.client.post("/ws", content=gen(), headers={**api.h(api.center_key),
                                                       "Content-Type": "text/xml"})
    assert r.status_code == 413 and "too_large" in r.text


def test_too_deep_and_malformed_are_faults(api) -> None:
    deep = soap_envelope("GetFeedStatus", "<h:x>" * 100 + "</h:x>" * 100)
    r = _post(api, deep)
    assert r.status_code == 500 and "too_deep" in r.text
    r = _post(api, "<not-closed>")
    assert r.status_code == 500 and "malformed" in r.text
    r = _post(api, soap_envelope("DropTables", ""))
    assert r.status_code == 500 and "unknown_operation" in r.text


def test_soap_without_key_is_401_fault_and_audited(api) -> None:
    before = len(api.store.audit_rows(outcome="denied", limit=100000))
    r = api.client.post("/ws", content=soap_envelope("GetFeedStatus", ""),
                        headers={"Content-Type": "text/xml"})
    assert r.status_code == 401 and "missing_key" in r.text
    assert len(api.store.audit_rows(outcome="denied", limit=100000)) == before + 1


def test_soap_person_level_read_is_audited(api) -> None:
    r = _post(api, soap_envelope("QueryRecords", "<h:dataset>outpatient_visit</h:dataset>"
                                 "<h:limit>3</h:limit>"))
    assert r.status_code == 200
    row = api.store.audit_rows(outcome="allowed", limit=1)[0]
    assert row["interface"] == "soap" and row["endpoint"] == "QueryRecords"
    assert len(row["person_keys"]) >= 1 and len(row["record_keys"]) == 3
