"""The response cache and the verified-key cache (the fast path of the share API):

* a cached read is never served after the warehouse changed (pipeline write), nor while the
  warehouse files are too fresh to trust their timestamps;
* a cached response stays tenant-isolated (same URL, another key: its own data; a cached
  center asked for by another center: 403, audited);
* person-level reads are read and audited on every request, never cached;
* a key revoked from another process stops working within ``KEY_CACHE_SECONDS``;
* the cache's memory is bounded.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from fastapi.testclient import TestClient

from hisx.api.app import create_app
from hisx.api.auth import KEY_CACHE_SECONDS
from hisx.api.cache import SETTLE_SECONDS, Cached, ResponseCache, file_version
from hisx.api.keys import KeyStore

MART = "/api/v1/marts/mart_visits_daily"
MONTH = {"date_from": "2026-08-01", "date_to": "2026-08-31"}


def _settle(*paths: Path) -> None:
    """Wait until the files are old enough for the cache to store entries under them."""
    newest = max(max(p.stat().st_mtime, p.stat().st_ctime) for p in paths if p.exists())
    time.sleep(max(0.0, newest + SETTLE_SECONDS + 0.05 - time.time()))


@dataclass
class Own:
    """An API over a private copy of the test warehouse, which the test may write."""

    client: TestClient
    cache: ResponseCache
    path: Path
    keys: KeyStore
    mine: str
    other: str
    mine_key: str
    other_key: str
    region_key: str

    def h(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def write(self, sql: str, params: list | None = None) -> None:
        """A pipeline-like write: one writer connection, committed and closed."""
        with duckdb.connect(str(self.path)) as con:
            con.execute(sql, params or [])


@pytest.fixture
def own(api, tmp_path) -> Iterator[Own]:
    path = tmp_path / "wh.duckdb"
    shutil.copyfile(api.warehouse, path)
    keys = KeyStore(tmp_path / "keys.sqlite")
    big = {"rate": 1e6, "burst": 1e6}
    mine, _ = keys.create(api.mine, ["center:read"], **big)
    other, _ = keys.create(api.other, ["center:read"], **big)
    region, _ = keys.create("*", ["region:read"], **big)
    cache = ResponseCache()
    app = create_app(f"duckdb:///{path}", keys, cache=cache)
    with TestClient(app) as client:
        yield Own(client, cache, path, keys, api.mine, api.other, mine, other, region)
    keys.close()


def _visits(own: Own, key: str, **params: str) -> list[tuple[str, str, int]]:
    r = own.client.get(MART, params={**MONTH, **params}, headers=own.h(key))
    assert r.status_code == 200, r.text
    return [(i["tenant"], i["period_start"], i["visits"]) for i in r.json()["items"]]


def test_cache_serves_hits_and_never_stale_data_after_a_write(own) -> None:
    _settle(own.path)
    before = _visits(own, own.mine_key)
    assert before and own.cache.stores == 1
    assert _visits(own, own.mine_key) == before
    assert own.cache.hits == 1  # the second read was served from the cache

    own.write("UPDATE mart_visits_daily SET visits = visits + 1000 WHERE tenant = ?",
              [own.mine])
    after = _visits(own, own.mine_key)
    assert after == [(t, d, v + 1000) for t, d, v in before]
    # the files just changed: the new page is not stored until their timestamps settle
    stores = own.cache.stores
    assert _visits(own, own.mine_key) == after and own.cache.stores == stores

    _settle(own.path)
    assert _visits(own, own.mine_key) == after and own.cache.stores == stores + 1
    hits = own.cache.hits
    assert _visits(own, own.mine_key) == after and own.cache.hits == hits + 1

    # a second write, same size of data, right after a cached read: still seen
    own.write("UPDATE mart_visits_daily SET visits = visits - 1000 WHERE tenant = ?",
              [own.mine])
    assert _visits(own, own.mine_key) == before


def test_a_hit_replays_the_same_response_in_every_format(own) -> None:
    _settle(own.path)
    for fmt in ("json", "csv", "parquet"):
        p = {**MONTH, "format": fmt, "limit": 10}
        miss, hit = (own.client.get(MART, params=p, headers=own.h(own.mine_key))
                     for _ in range(2))
        assert miss.status_code == hit.status_code == 200
        assert hit.content == miss.content and len(miss.content) > 0
        for h in ("content-type", "content-length", "x-next-offset"):
            assert hit.headers.get(h) == miss.headers.get(h)
    assert own.cache.hits == 3 and own.cache.stores == 3


def test_centers_and_named_queries_follow_the_warehouse(own) -> None:
    _settle(own.path)
    q = "/api/v1/queries/visits_by_department"
    for _ in range(2):
        centers = own.client.get("/api/v1/centers", headers=own.h(own.mine_key)).json()
        depts = own.client.get(q, params=MONTH, headers=own.h(own.mine_key)).json()
    assert own.cache.hits == 2
    own.write("UPDATE dim_center SET center_name = 'renamed' WHERE tenant = ?", [own.mine])
    own.write("DELETE FROM fact_visit WHERE tenant = ?", [own.mine])
    centers2 = own.client.get("/api/v1/centers", headers=own.h(own.mine_key)).json()
    assert [c["center_name"] for c in centers2["items"]] == ["renamed"]
    assert centers["items"][0]["center_name"] != "renamed"
    depts2 = own.client.get(q, params=MONTH, headers=own.h(own.mine_key)).json()
    assert depts["items"] and depts2["items"] == []


def test_cached_response_stays_tenant_isolated(own) -> None:
    _settle(own.path)
    mine = _visits(own, own.mine_key)
    assert _visits(own, own.mine_key) == mine and own.cache.hits == 1
    assert {t for t, _, _ in mine} == {own.mine}
    # the very same URL with another center's key: that center's rows, not the cached page
    theirs = _visits(own, own.other_key)
    assert theirs and {t for t, _, _ in theirs} == {own.other}
    # the region key caches center A's page; center B asking for A is still refused
    assert _visits(own, own.region_key, center=own.mine) == mine
    r = own.client.get(MART, params={**MONTH, "center": own.mine}, headers=own.h(own.other_key))
    assert r.status_code == 403 and r.json()["error"]["code"] == "tenant_forbidden"
    denied = own.keys.audit_rows(outcome="denied", limit=1)[0]
    assert (denied["endpoint"], denied["tenant"], denied["status"]) == (MART, own.other, 403)
    assert denied["params"]["center"] == own.mine
    # and without a key the cached page is not served either
    assert own.client.get(MART, params=MONTH).status_code == 401


def test_person_level_reads_are_audited_every_time_never_cached(own) -> None:
    _settle(own.path)
    url = "/api/v1/records/outpatient_visit"
    p = {"date_from": "2026-08-05", "date_to": "2026-08-05", "limit": 5}
    n0 = len(own.keys.audit_rows(outcome="allowed"))
    bodies = [own.client.get(url, params=p, headers=own.h(own.mine_key)).json()
              for _ in range(3)]
    assert bodies[0]["items"] and bodies[0] == bodies[1] == bodies[2]
    rows = own.keys.audit_rows(outcome="allowed")
    assert len(rows) == n0 + 3 and len(own.cache) == 0 and own.cache.hits == 0
    assert all(r["record_keys"] == [i["source_key"] for i in bodies[0]["items"]]
               for r in rows[:3])


def test_cache_off_reads_the_warehouse_every_time(api, tmp_path) -> None:
    cache = ResponseCache(ttl=0)
    app = create_app(f"duckdb:///{api.warehouse}", api.store, cache=cache)
    with TestClient(app) as client:
        for _ in range(2):
            assert client.get(MART, params=MONTH, headers=api.h(api.center_key)).is_success
    assert len(cache) == 0 and cache.hits == 0


def test_revoked_key_stops_within_the_bound(api) -> None:
    plain, rec = api.store.create(api.mine, ["center:read"], rate=1e6, burst=1e6)
    assert api.client.get("/api/v1/centers", headers=api.h(plain)).status_code == 200
    cli = KeyStore(api.store.path)  # another connection, as `hisx keys revoke` would be
    try:
        assert cli.revoke(rec.key_id)
    finally:
        cli.close()
    t0 = time.monotonic()
    while True:
        r = api.client.get("/api/v1/centers", headers=api.h(plain))
        waited = time.monotonic() - t0
        if r.status_code != 200:
            break
        assert waited <= KEY_CACHE_SECONDS + 0.5, "revoked key still accepted"
        time.sleep(0.05)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_key"
    assert waited <= KEY_CACHE_SECONDS + 0.5


def test_revoke_through_the_servers_store_is_immediate(api) -> None:
    plain, rec = api.store.create(api.mine, ["center:read"], rate=1e6, burst=1e6)
    for _ in range(2):
        assert api.client.get("/api/v1/centers", headers=api.h(plain)).status_code == 200
    assert api.store.revoke(rec.key_id)
    assert api.client.get("/api/v1/centers", headers=api.h(plain)).status_code == 401


def test_file_version_changes_on_every_write_and_waits_to_settle(tmp_path) -> None:
    db, wal = tmp_path / "w.duckdb", tmp_path / "w.duckdb.wal"
    db.write_bytes(b"a" * 100)
    fresh = file_version(str(db), str(wal))
    assert not fresh.settled  # just written: timestamps not yet trustworthy
    _settle(db)
    v1 = file_version(str(db), str(wal))
    assert v1.settled
    db.write_bytes(b"b" * 100)  # same size, in place
    v2 = file_version(str(db), str(wal))
    assert v2.stamp != v1.stamp and not v2.settled
    wal.write_bytes(b"x")  # a WAL appears
    assert file_version(str(db), str(wal)).stamp != v2.stamp
    with open(wal, "ab") as f:
        f.write(b"y")
    v3 = file_version(str(db), str(wal))
    os.remove(wal)
    assert file_version(str(db), str(wal)).stamp != v3.stamp


def test_cache_memory_is_bounded() -> None:
    from hisx.api.cache import Version

    v = Version("v1", settled=True)
    c = ResponseCache(max_entries=3, max_bytes=250, max_entry_bytes=100)
    body = Cached(b"x" * 100, 200, "application/json", ())
    assert not c.put("big", v, Cached(b"x" * 101, 200, None, ()))
    for k in "abc":
        assert c.put(k, v, body)
    assert len(c) == 2 and c.nbytes == 200  # max_bytes evicted the oldest
    assert c.get("a", v) is None and c.get("c", v) is body
    assert not c.put("d", Version("v1", settled=False), body)
    assert c.get("c", Version("v2", settled=True)) is None and len(c) == 1
