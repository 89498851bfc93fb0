"""Person keys come from the cache only while the patient's source row and the key are the
ones they were computed from: equal to a fresh computation, recomputed after a change."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
import sqlalchemy as sa

from hisx.connectors.warehouse import Warehouse
from hisx.pipelines import flow
from hisx.simulator import simulate
from hisx.standards import pseudonym


@pytest.fixture()
def wh(tmp_path, monkeypatch):
    monkeypatch.setenv("HISX_PSEUDO_KEY", "test-key-aaaaaaaaaaaaaaaaaaaaaaaa")
    url = f"sqlite:///{tmp_path / 'his.sqlite'}"
    simulate(url, centers=1, months=1, visits_per_month=600, seed=7, start=date(2026, 8, 1),
             progress=False)
    engine = sa.create_engine(url)
    with Warehouse.from_url(f"duckdb:///{tmp_path / 'wh.duckdb'}") as w:
        flow.ensure_warehouse(w)
        tenants = flow.discover_tenants(engine)
        flow.extract(engine, w, source="his", tenants=tenants)
        w.tenant = tenants[0].org_code
        yield w
    engine.dispose()


def fresh(wh: Warehouse, tenant: str, ids: list[int]) -> dict[int, str]:
    """Keys computed from the ODS rows now, without the cache."""
    p = wh.query_df("SELECT patient_id, id_no, name, birth_date, gender FROM ods_patients "
                    "WHERE org_code = :t", {"t": tenant})
    p = p[p["patient_id"].isin(ids)]
    keys = pseudonym.person_keys(pseudonym.key_from_env(), p["id_no"], p["name"],
                                 p["birth_date"], p["gender"])
    return dict(zip(p["patient_id"].astype(int), keys, strict=True))


def patient_joins(wh: Warehouse, monkeypatch) -> list[str]:
    """The person-key lookups that join the patient table, recorded as they run."""
    joins: list[str] = []
    real = type(wh).query_df

    def spy(self, sql, params=None):
        if "JOIN stage_pids" in sql:
            joins.append(sql)
        return real(self, sql, params)

    monkeypatch.setattr(type(wh), "query_df", spy)
    return joins


def as_dict(df: pd.DataFrame) -> dict[int, str]:
    return dict(zip(df["patient_id"].astype(int), df["person_key"], strict=True))


def test_cached_keys_equal_fresh_ones_and_follow_changes(wh, monkeypatch) -> None:
    t = wh.tenant
    ids = [int(x) for x in wh.query_df("SELECT patient_id FROM ods_patients WHERE org_code = :t "
                                       "ORDER BY patient_id LIMIT 50", {"t": t})["patient_id"]]
    first = as_dict(flow.person_keys(wh, t, ids))
    assert first == fresh(wh, t, ids)
    assert wh.scalar("SELECT count(*) FROM person_key_cache WHERE tenant = :t", {"t": t}) == 50
    # served from the cache: the second call reads the same keys
    assert as_dict(flow.person_keys(wh, t, ids)) == first

    # the source row of one patient changes (new row version, new name, no valid ID): the
    # cached key of the old version is not used
    victim = ids[0]
    wh.execute("UPDATE ods_patients SET id_no = NULL, name = 'X' || name, "
               "row_version = row_version + 1000000 WHERE org_code = :t AND patient_id = :p",
               {"t": t, "p": victim})
    after = as_dict(flow.person_keys(wh, t, ids))
    assert after == fresh(wh, t, ids)
    assert after[victim] != first[victim]
    assert {k: v for k, v in after.items() if k != victim} == {
        k: v for k, v in first.items() if k != victim}
    assert wh.scalar("SELECT count(*) FROM person_key_cache WHERE tenant = :t AND "
                     "patient_id = :p", {"t": t, "p": victim}) == 1

    # a rotated key: every key is recomputed under the new key id
    monkeypatch.setenv("HISX_PSEUDO_KEY", "another-key-bbbbbbbbbbbbbbbbbbbbbbbb")
    rotated = as_dict(flow.person_keys(wh, t, ids))
    assert rotated == fresh(wh, t, ids)
    assert not set(rotated.values()) & set(after.values())


def test_keys_cached_by_the_person_dataset_equal_fresh_ones(wh) -> None:
    from datetime import datetime

    t = wh.tenant
    tenant = flow.Tenant(t, wh.scalar("SELECT DISTINCT his_vendor FROM ods_organizations "
                                      "WHERE org_code = :t", {"t": t}))
    (st,) = flow.standardize_tenants(wh, "person", [tenant], now=datetime(2027, 1, 1))
    cached = wh.query_df("SELECT patient_id, person_key FROM person_key_cache WHERE tenant = :t",
                         {"t": t})
    assert len(cached) == st.standardized > 0  # every standardized patient, nothing else
    assert as_dict(cached) == fresh(wh, t, [int(x) for x in cached["patient_id"]])
    # the visits then find every key in the cache: nothing is hashed again
    ids = [int(x) for x in wh.query_df("SELECT DISTINCT patient_id FROM ods_registrations")
           ["patient_id"].dropna()]
    before = set(map(tuple, wh.query_df("SELECT * FROM person_key_cache").itertuples(index=False)))
    keys = flow.person_keys(wh, t, ids)
    assert as_dict(keys) == fresh(wh, t, ids)
    after = set(map(tuple, wh.query_df("SELECT * FROM person_key_cache").itertuples(index=False)))
    assert before <= after  # only patients the person dataset quarantined were added
    assert len(after - before) == len(set(ids) - set(cached["patient_id"].astype(int)))


def test_repeated_lookups_skip_the_patient_join_until_patients_change(wh, monkeypatch) -> None:
    """The datasets of one run name the same patients: the second lookup is served from the
    process's memo, a changed patient row invalidates it."""
    from hisx.pipelines import std_batches

    t = wh.tenant
    ids = [int(x) for x in wh.query_df("SELECT patient_id FROM ods_patients WHERE org_code = :t "
                                       "ORDER BY patient_id LIMIT 40", {"t": t})["patient_id"]]
    joins = patient_joins(wh, monkeypatch)
    wanted = pd.DataFrame({"tenant": [t] * len(ids), "patient_id": ids})
    first = as_dict(std_batches.person_keys_of(wh, wanted))
    assert len(joins) == 1 and first == fresh(wh, t, ids)
    again = as_dict(std_batches.person_keys_of(wh, wanted))
    assert again == first and len(joins) == 1  # all from the memo
    wh.execute("UPDATE ods_patients SET id_no = NULL, name = 'Y' || name, "
               "row_version = row_version + 2000000 "
               "WHERE org_code = :t AND patient_id = :p", {"t": t, "p": ids[1]})
    after = as_dict(std_batches.person_keys_of(wh, wanted))
    assert len(joins) == 2 and after == fresh(wh, t, ids) and after[ids[1]] != first[ids[1]]


def test_an_hour_of_visits_looks_its_patients_up_once(wh, monkeypatch) -> None:
    """Pending rows that fit in the memo have their person keys looked up in one join
    before the batches (each batch's lookup joined the whole patient table), and the keys
    the batches use are the fresh ones."""
    from hisx.pipelines import std_batches

    monkeypatch.setattr(std_batches, "_MEMO", std_batches._KeyMemo())
    monkeypatch.setenv("HISX_STD_CHUNK_ROWS", "100")  # many batches, as many vendors' maps do
    monkeypatch.setenv("HISX_STD_BATCH_ROWS", "100")
    tenants = [flow.Tenant(wh.tenant, wh.scalar("SELECT his_vendor FROM ods_organizations"))]
    joins = patient_joins(wh, monkeypatch)
    stats = flow.standardize_tenants(wh, "outpatient_visit", tenants)
    assert sum(s.rows_in for s in stats) > 300 and len(joins) == 1
    got = wh.query_df("SELECT s.person_key, r.patient_id FROM std_outpatient_visit s "
                      "JOIN ods_registrations r ON r.reg_id = s.source_key")
    want = fresh(wh, wh.tenant, sorted(set(got["patient_id"].astype(int))))
    assert {int(p): k for k, p in zip(got["person_key"], got["patient_id"], strict=True)} == want
