"""Feed envelopes built from the std rows at send time are the ones standardization would
have stored, and a message keeps its own version's payload when its std row is replaced or
removed before it is sent (see :mod:`hisx.pipelines.feed_render`)."""

from __future__ import annotations

import json
from datetime import date, datetime

import pyarrow as pa
import pytest
import sqlalchemy as sa

from hisx.connectors.warehouse import Warehouse
from hisx.pipelines import deletes, feed_render, feeds, flow
from hisx.pipelines.standardize import standardize
from hisx.pipelines.std_batches import _to_arrow
from hisx.pipelines.std_tables import ARRIVAL, ensure_std, std_columns, std_table
from hisx.simulator import simulate
from hisx.standards.datasets import DATASETS, load_schema
from hisx.standards.maps import load_maps
from hisx.standards.samples import sample_person_keys, sample_source

T = "C-RENDER"


def _standardized(dataset: str, n: int = 40):
    maps = load_maps(T, "vendor_a")
    res = standardize(dataset, sample_source(dataset, n, maps, tenant=T), tenant=T,
                      vendor="vendor_a", load_id="L1", now=datetime(2027, 1, 1),
                      person_keys=sample_person_keys(n, T), maps=maps)
    assert len(res.standardized) == n
    return res.standardized


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_envelopes_built_at_send_time_equal_the_stored_ones(any_warehouse, dataset) -> None:
    """Every dataset, DuckDB and PostgreSQL: the std rows written, the ledger rows without
    envelopes; what would be sent equals what ``build_ledger_rows`` stores, byte for byte,
    and the one invalid payload keeps its stored dead-letter envelope."""
    wh = any_warehouse
    std = _standardized(dataset)
    schema = load_schema(dataset)
    bad = std.copy()
    name, prop = next((k, v) for k, v in schema["properties"].items()
                      if k != "tenant" and v.get("maxLength"))
    bad.loc[bad.index[-1], name] = "X" * (prop["maxLength"] + 1)  # beyond the contract
    eager = feeds.build_ledger_rows(dataset, None, bad, "L1")
    lean = feeds.build_ledger_rows(dataset, None, bad, "L1", envelopes=False)
    assert lean["envelope"].null_count == len(bad) - 1
    assert lean["topic"].to_pylist()[-1] == feeds.DLQ_TOPIC
    assert lean["envelope"][len(bad) - 1] == eager["envelope"][len(bad) - 1]
    ensure_std(wh, dataset, schema)
    rows = _to_arrow(bad.iloc[:-1], std_columns(schema))
    wh.load_arrow(std_table(dataset), rows.append_column(
        ARRIVAL, pa.nulls(rows.num_rows, pa.timestamp("us"))))
    with wh.transaction():
        assert feeds.enqueue(wh, dataset, None, bad, "L1", rows=lean) == len(bad)
    assert wh.scalar("SELECT count(*) FROM feed_ledger WHERE envelope IS NULL") == len(bad) - 1
    sent = feed_render.messages(wh)
    want = dict(zip(eager["message_id"].to_pylist(), eager["envelope"].to_pylist(), strict=True))
    got = dict(zip(sent["message_id"].to_pylist(), sent["envelope"].to_pylist(), strict=True))
    assert got == want
    assert json.loads(got[eager["message_id"][0].as_py()])["payload"]["tenant"] == T


def _visits_source(tmp_path):
    url = f"sqlite:///{tmp_path / 'his.sqlite'}"
    simulate(url, centers=1, months=1, visits_per_month=150, seed=9, start=date(2026, 8, 1),
             progress=False)
    return url


def _run(engine, wh) -> None:
    tenants = flow.discover_tenants(engine)
    flow.extract(engine, wh, source="his", tenants=tenants)
    flow.standardize_tenants(wh, "outpatient_visit", tenants, now=datetime(2027, 1, 1))


def test_a_message_keeps_its_versions_payload_when_the_std_row_changes(tmp_path) -> None:
    """A visit standardized, then changed at the source and standardized again, then deleted,
    all before publishing: its first version's message is sent with the first payload, the
    second with the second, and publishing finds every envelope."""
    url = _visits_source(tmp_path)
    engine = sa.create_engine(url)
    with Warehouse.from_url(f"duckdb:///{tmp_path / 'wh.duckdb'}") as wh:
        flow.ensure_warehouse(wh)
        _run(engine, wh)
        where = "dataset = 'outpatient_visit'"
        first = feed_render.messages(wh, where)
        assert first.num_rows > 100
        assert wh.scalar(f"SELECT count(*) FROM feed_ledger WHERE {where} AND envelope "
                         "IS NULL") == first.num_rows  # nothing stored for valid rows
        tenant, key = first["tenant"][0].as_py(), first["source_key"][0].as_py()
        v1 = json.loads(first["envelope"][0].as_py())
        assert v1["payload"]["source_key"] == key
        with engine.begin() as c:  # a new version of that visit at the source
            c.execute(sa.text(
                "UPDATE registrations SET reg_fee = reg_fee + 1, updated_at = :now, "
                "row_version = (SELECT max(row_version) FROM registrations) + 1000 "
                "WHERE reg_id = :k"), {"now": datetime(2026, 9, 1), "k": key})
        _run(engine, wh)
        mine = f"{where} AND tenant = '{tenant}' AND source_key = {key}"
        both = feed_render.messages(wh, mine)
        assert both.num_rows == 2
        stored = wh.query_arrow(f"SELECT envelope FROM feed_ledger WHERE {mine} ORDER BY seq")
        assert stored["envelope"][0].as_py() == first["envelope"][0].as_py()  # materialized
        assert stored["envelope"][1].as_py() is None
        old, new = (json.loads(e) for e in both["envelope"].to_pylist())
        assert old == v1
        assert new["row_version"] > old["row_version"]
        assert new["payload"]["row_version"] == new["row_version"]
        assert new["payload"]["reg_fee"] == old["payload"]["reg_fee"] + 1
        deletes.remove(wh, "his", tenant, "registrations", [key])
        assert not wh.scalar(f"SELECT count(*) FROM std_outpatient_visit WHERE tenant = "
                             f"'{tenant}' AND source_key = {key}")
        after = feed_render.messages(wh, mine)
        assert [json.loads(e) for e in after["envelope"].to_pylist()] == [old, new]
        total = wh.scalar("SELECT count(*) FROM feed_ledger")
        st = feeds.publish(wh, feeds.FeedConfig(None, tmp_path / "outbox"))
        assert st.error is None and st.failed == 0
        assert st.acked + st.dead == total
        lines = [json.loads(x) for f in (tmp_path / "outbox").glob("*.jsonl")
                 for x in f.read_text().splitlines()]
        sent = [x for x in lines if x["message_id"] in {old["message_id"], new["message_id"]}]
        assert sorted(x["payload"]["row_version"] for x in sent) == sorted(
            [old["row_version"], new["row_version"]])
    engine.dispose()


def test_publishing_stops_on_a_message_it_cannot_build(tmp_path) -> None:
    """A message whose std row was changed behind the pipeline's back (no envelope stored)
    stops the run with a clear error; nothing of that page is marked sent."""
    url = _visits_source(tmp_path)
    engine = sa.create_engine(url)
    with Warehouse.from_url(f"duckdb:///{tmp_path / 'wh.duckdb'}") as wh:
        flow.ensure_warehouse(wh)
        _run(engine, wh)
        wh.execute("UPDATE std_outpatient_visit SET row_version = row_version + 1 "
                   "WHERE source_key = (SELECT min(source_key) FROM std_outpatient_visit)")
        st = feeds.publish(wh, feeds.FeedConfig(None, tmp_path / "outbox"))
        assert st.error and "no std row of their version" in st.error
        first_seq = wh.scalar("SELECT min(seq) FROM feed_ledger WHERE envelope IS NULL AND "
                              "dataset = 'outpatient_visit' AND source_key = (SELECT "
                              "min(source_key) FROM std_outpatient_visit)")
        assert wh.scalar("SELECT count(*) FROM feed_ledger WHERE state = 'pending' AND "
                         "seq >= :s", {"s": first_seq}) > 0
    engine.dispose()
