"""REST behaviour: records valid against the feed contract, pagination and formats, person
history only for a contracted center, keys (hashed, revocable), 401/403/429 bodies, audit
append-only, named queries with the tenant forced from the key, SQL injection inert."""

from __future__ import annotations

import io
import sqlite3

import jsonschema
import pyarrow.parquet as pq
import pytest

from hisx.standards.datasets import DATASETS, load_schema

from .conftest import contracted_person, wh_query


@pytest.mark.parametrize("ds", list(DATASETS))
def test_records_validate_against_dataset_schema(api, ds) -> None:
    r = api.client.get(f"/api/v1/records/{ds}", params={"limit": 300},
                       headers=api.h(api.center_key))
    assert r.status_code == 200
    items = r.json()["items"]
    assert items
    validator = jsonschema.Draft202012Validator(load_schema(ds))
    for item in items:
        validator.validate(item)
        assert item["tenant"] == api.mine


def test_records_date_range_and_pages_cover_exactly(api) -> None:
    want = wh_query(api, "SELECT source_key FROM std_outpatient_visit WHERE tenant = ? AND "
                         "business_date BETWEEN '2026-08-03' AND '2026-08-05' ORDER BY "
                         "business_date, source_key", [api.mine])
    got, offset = [], 0
    while offset is not None:
        page = api.client.get("/api/v1/records/outpatient_visit", headers=api.h(api.center_key),
                              params={"date_from": "2026-08-03", "date_to": "2026-08-05",
                                      "limit": 97, "offset": offset}).json()
        got += [i["source_key"] for i in page["items"]]
        offset = page["next_offset"]
    assert got == [w[0] for w in want] and len(got) > 97


def test_mart_csv_and_parquet_match_json(api) -> None:
    params = {"date_from": "2026-08-01", "date_to": "2026-08-31"}
    js = api.client.get("/api/v1/marts/mart_revenue_daily", params=params,
                        headers=api.h(api.center_key)).json()["items"]
    pqr = api.client.get("/api/v1/marts/mart_revenue_daily",
                         params={**params, "format": "parquet", "limit": 200000},
                         headers=api.h(api.center_key))
    assert pqr.headers["content-type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(pqr.content))
    assert table.num_rows == len(js) > 0
    csv = api.client.get("/api/v1/marts/mart_revenue_daily", params={**params, "format": "csv"},
                         headers=api.h(api.center_key))
    assert csv.headers["content-type"].startswith("text/csv")
    assert len(csv.text.strip().splitlines()) == len(js) + 1
    big = api.client.get("/api/v1/marts/fact_visit", params={"limit": 50000},
                         headers=api.h(api.center_key))
    assert big.status_code == 400 and big.json()["error"]["code"] == "limit_too_large"


def test_mart_dimension_filter(api) -> None:
    r = api.client.get("/api/v1/marts/fact_visit", headers=api.h(api.center_key),
                       params={"dept_code": "02", "is_valid": "true", "limit": 5000}).json()
    n = wh_query(api, "SELECT count(*) FROM fact_visit WHERE tenant = ? AND dept_code = '02' "
                      "AND is_valid", [api.mine])[0][0]
    assert len(r["items"]) == n > 0
    assert all(i["dept_code"] == "02" and i["is_valid"] for i in r["items"])


def test_marts_list_has_descriptions_from_the_standard(api) -> None:
    items = api.client.get("/api/v1/marts", headers=api.h(api.region_key)).json()["items"]
    from hisx.marts.runner import MARTS

    assert [i["name"] for i in items] == list(MARTS)
    vm = next(i for i in items if i["name"] == "mart_visits_monthly")
    assert vm["description"].startswith("Outpatient visits per center and month")
    assert any("就诊人次" in c["description"] for c in vm["columns"])


def test_person_history_for_contracted_center_only(api) -> None:
    pk = contracted_person(api, api.mine)
    r = api.client.get(f"/api/v1/persons/{pk}/visits", headers=api.h(api.center_key))
    assert r.status_code == 200
    want = wh_query(api, "SELECT tenant, source_key FROM std_outpatient_visit WHERE "
                         "person_key = ? ORDER BY business_time, tenant, source_key", [pk])
    assert [(i["tenant"], i["source_key"]) for i in r.json()["items"]] == want and want
    row = api.store.audit_rows(person=pk, outcome="allowed", limit=1)[0]
    assert row["person_keys"] == [pk] and len(row["record_keys"]) == len(want)
    # the other center's family-doctor team has no contract with this person
    r = api.client.get(f"/api/v1/persons/{pk}/visits", headers=api.h(api.other_key))
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_contracted"
    # the region may not read person-level history; a key without person:read neither
    assert api.client.get(f"/api/v1/persons/{pk}/visits",
                          headers=api.h(api.region_key)).status_code == 403
    plain, _ = api.store.create(api.mine, ["center:read"], rate=100, burst=100)
    r = api.client.get(f"/api/v1/persons/{pk}/visits", headers=api.h(plain))
    assert r.status_code == 403 and r.json()["error"]["code"] == "scope_forbidden"
    assert len(api.store.audit_rows(person=pk, outcome="denied", limit=100)) >= 3


def test_expired_or_terminated_contract_is_denied(api) -> None:
    rows = wh_query(api, "SELECT person_key FROM std_family_contract WHERE tenant = ? AND "
                         "status_code = '3' AND person_key NOT IN (SELECT person_key FROM "
                         "std_family_contract WHERE tenant = ? AND status_code = '1') LIMIT 1",
                    [api.mine, api.mine])
    assert rows
    r = api.client.get(f"/api/v1/persons/{rows[0][0]}/visits", headers=api.h(api.center_key))
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_contracted"


def test_401_bodies(api) -> None:
    r = api.client.get("/api/v1/centers")
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_key"
    bad = api.center_key[:-4] + "AAAA"
    r = api.client.get("/api/v1/centers", headers={"X-API-Key": bad})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_key"
    assert r.headers["www-authenticate"] == "Bearer"


def test_keys_are_stored_hashed_and_revocable(api) -> None:
    plain, rec = api.store.create(api.mine, ["center:read"], rate=100, burst=100)
    secret = plain.rsplit("_", 1)[1]
    with open(api.store.path, "rb") as f:
        assert secret.encode() not in f.read()
    assert api.client.get("/api/v1/centers", headers=api.h(plain)).status_code == 200
    assert api.store.revoke(rec.key_id)
    r = api.client.get("/api/v1/centers", headers=api.h(plain))
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_key"


def test_rate_limit_429(api) -> None:
    plain, _ = api.store.create(api.mine, ["center:read"], rate=0.5, burst=3)
    codes = [api.client.get("/api/v1/centers", headers=api.h(plain)).status_code
             for _ in range(5)]
    assert codes[:3] == [200] * 3 and codes[3:] == [429, 429]
    r = api.client.get("/api/v1/centers", headers=api.h(plain))
    assert r.json()["error"]["code"] == "rate_limited" and int(r.headers["retry-after"]) >= 1


def test_audit_is_append_only(api) -> None:
    con = sqlite3.connect(api.store.path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            con.execute("UPDATE audit SET outcome = 'allowed'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            con.execute("DELETE FROM audit")
    finally:
        con.close()


def test_audit_endpoint_scoped_to_own_center(api) -> None:
    rows = api.client.get("/api/v1/audit", headers=api.h(api.center_key)).json()["items"]
    assert rows and all(r["tenant"] == api.mine for r in rows)


def test_named_query_tenant_forced_from_key(api) -> None:
    p = {"date_from": "2026-08-01", "date_to": "2026-08-31"}
    mine = api.client.get("/api/v1/queries/revenue_by_fee_category", params=p,
                          headers=api.h(api.center_key)).json()["items"]
    # a 'tenant' parameter from the caller is not a parameter: it changes nothing
    forged = api.client.get("/api/v1/queries/revenue_by_fee_category",
                            params={**p, "tenant": "*"}, headers=api.h(api.center_key))
    assert forged.status_code == 200 and forged.json()["items"] == mine
    assert {i["tenant"] for i in mine} == {api.mine}
    region = api.client.get("/api/v1/queries/revenue_by_fee_category", params=p,
                            headers=api.h(api.region_key)).json()["items"]
    assert {i["tenant"] for i in region} == set(api.centers)
    want = wh_query(api, "SELECT sum(amount) FROM fact_charge WHERE tenant = ? AND "
                         "period_start BETWEEN '2026-08-01' AND '2026-08-31'", [api.mine])
    assert sum(i["net_amount"] for i in mine) == pytest.approx(float(want[0][0]))


def test_named_query_files_are_checked() -> None:
    from hisx.api import queries

    ok = "-- name: q\n-- column tenant: string\nSELECT tenant FROM t WHERE tenant = :tenant"
    assert queries.parse(ok).name == "q"
    for bad in (ok.replace("WHERE tenant = :tenant", ""),
                ok + "; DROP TABLE t",
                ok.replace("-- column", "-- param tenant: string required\n-- column"),
                ok + " AND x = :undeclared"):
        with pytest.raises(ValueError):
            queries.parse(bad)


INJECTIONS = ["' OR '1'='1", "x'; DROP TABLE fact_visit; --", "1 UNION SELECT * FROM std_person",
              "*", "%", "\\'; SELECT 1; --"]


def test_sql_injection_strings_change_nothing(api) -> None:
    before = wh_query(api, "SELECT count(*) FROM fact_visit")[0][0]
    routes = [r for r in api.client.app.state.rest_router.routes
              if "{" not in r.path and r.path not in ("/api/v1/audit",)]
    for route in routes:
        str_params = [p.name for p in route.dependant.query_params
                      if "str" in str(p.field_info.annotation) and p.name != "format"]
        required = {p.name: ("2026-08-01" if "date" in str(p.field_info.annotation) else "5")
                    for p in route.dependant.query_params if p.field_info.is_required()}
        for name in str_params:
            for s in INJECTIONS:
                r = api.client.get(route.path, params={**required, name: s},
                                   headers=api.h(api.center_key))
                assert r.status_code in (200, 403, 422), (route.path, name, s, r.text[:200])
                if r.status_code == 200:
                    items = r.json()["items"]
                    # an injected filter value matches nothing; never another center's rows
                    assert all(i.get("tenant", api.mine) == api.mine for i in items)
                    if name not in ("center",) and route.path.startswith("/api/v1/marts/"):
                        assert items == [], (route.path, name, s)
    assert wh_query(api, "SELECT count(*) FROM fact_visit")[0][0] == before
