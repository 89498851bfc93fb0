"""Feed ledger (outbox): enqueue in the std transaction, idempotence, validation, outbox mode."""

from __future__ import annotations

import json
import logging
import random
from datetime import date

import pandas as pd
import pytest

from hisx.connectors.feeds_validator import ColumnValidator
from hisx.connectors.warehouse import Warehouse
from hisx.pipelines import feeds

from .conftest import feed_config
from .samples import visits

NATIONAL_ID = "110101199003071234"


def ledger(wh: Warehouse) -> pd.DataFrame:
    return wh.query_df("SELECT * FROM feed_ledger ORDER BY seq")


def test_enqueue_is_idempotent_and_ordered(duck):
    df = visits(n=20)
    with duck.transaction():
        assert feeds.enqueue(duck, "outpatient_visit", "C001", df, "L1") == 20
    with duck.transaction():  # re-run / backfill of the same rows: nothing new
        assert feeds.enqueue(duck, "outpatient_visit", "C001", df, "L2") == 0
    newer = visits(n=3, row_version=900)  # new versions of keys 1..3
    with duck.transaction():
        assert feeds.enqueue(duck, "outpatient_visit", "C001", newer, "L3") == 3
    led = ledger(duck)
    assert len(led) == 23 and led["message_id"].is_unique
    assert set(led["state"]) == {"pending"}
    assert led["topic"].unique().tolist() == ["hisx.std.outpatient_visit.v1"]
    first = led[led["source_key"] == 1]
    assert first["row_version"].tolist() == [100, 900]  # versions of a key in order
    env = json.loads(first["envelope"].iloc[0])
    assert env["message_id"] == feeds.message_id("C001", "outpatient_visit", 1, 100)
    assert env["schema_id"].endswith("outpatient_visit.schema.json")
    assert env["event_time"] == "2024-03-01T08:00:00+08:00"
    assert feeds.contract("outpatient_visit").validator.reasons(env["payload"]) == []


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_rollback_leaves_no_ledger_rows(backend, request):
    url = "duckdb://" if backend == "duckdb" else request.getfixturevalue("pg_database")
    wh = Warehouse.from_url(url)
    try:
        feeds.ensure_ledger(wh)
        wh.execute("CREATE TABLE std_probe (k BIGINT)")
        with pytest.raises(RuntimeError), wh.transaction():
            wh.execute("INSERT INTO std_probe VALUES (1)")
            assert feeds.enqueue(wh, "outpatient_visit", "C001", visits(n=5), "L1") == 5
            assert wh.scalar("SELECT count(*) FROM feed_ledger") == 5
            raise RuntimeError("standardization failed after enqueue")
        assert wh.scalar("SELECT count(*) FROM std_probe") == 0
        assert wh.scalar("SELECT count(*) FROM feed_ledger") == 0
        with wh.transaction():
            assert feeds.enqueue(wh, "outpatient_visit", "C001", visits(n=5), "L1") == 5
        assert wh.scalar("SELECT count(*) FROM feed_ledger") == 5
    finally:
        wh.close()


def test_invalid_payloads_are_routed_to_the_dead_letter_topic(duck, caplog):
    df = visits(n=6)
    df.loc[1, "dept_code"] = "ZZ"
    df.loc[2, "person_key"] = NATIONAL_ID  # a plain ID where a pseudonym belongs
    df.loc[3, "reg_fee"] = None
    caplog.set_level(logging.DEBUG, logger="hisx")
    with duck.transaction():
        feeds.enqueue(duck, "outpatient_visit", "C001", df, "L1")
    dead = feeds.dead_letters(duck)
    got = {int(r.source_key): json.loads(r.reasons) for r in dead.itertuples()}
    assert got == {2: ["invalid:dept_code:enum"], 3: ["invalid:person_key:pattern"],
                   4: ["invalid:reg_fee:type"]}
    env = json.loads(duck.scalar("SELECT envelope FROM feed_ledger WHERE source_key = 3"))
    assert env["original_topic"] == "hisx.std.outpatient_visit.v1"
    assert NATIONAL_ID not in json.dumps(env)  # redacted in the dead-letter copy
    assert NATIONAL_ID not in duck.scalar("SELECT string_agg(envelope, '') FROM feed_ledger")
    assert NATIONAL_ID not in caplog.text


def test_unexpected_columns_never_leave(duck):
    df = visits(n=3)
    df["id_no"] = NATIONAL_ID
    with duck.transaction():
        feeds.enqueue(duck, "outpatient_visit", "C001", df, "L1")
    led = ledger(duck)
    assert set(led["topic"]) == {feeds.DLQ_TOPIC}
    assert all(json.loads(r) == ["unexpected:id_no"] for r in led["reasons"])
    assert not led["envelope"].str.contains(NATIONAL_ID).any()


def test_fast_validation_agrees_with_jsonschema():
    """Random mutations of valid rows: the column-wise path gives jsonschema's verdicts."""
    rng = random.Random(7)
    c = feeds.contract("outpatient_visit")
    assert c.validator.vectorized
    df = visits(n=300)
    bad_values = {"dept_code": ["99", "", None, 3], "visit_no": ["x" * 19, None, "中" * 18],
                  "person_key": ["ABC", "0" * 63, "0" * 64 + "\n"], "reg_fee": [None, "5", True],
                  "is_deleted": [None, 1, "false"], "source_key": [None, 1.5],
                  "first_visit_code": ["3", "1 "], "business_time": ["2024-03-01", None]}
    df = df.astype(object)
    for i in range(len(df)):
        if rng.random() < 0.5:
            col = rng.choice(list(bad_values))
            df.at[i, col] = rng.choice(bad_values[col])
    cols = feeds.payload_columns(df, c.schema)
    fast = c.validator.validate_columns(cols, len(df))
    records = json.loads(df.to_json(orient="records", date_format="iso"))
    slow = {}
    for i in range(len(df)):
        payload = {k: (v.as_py() if hasattr(v, "as_py") else v)
                   for k, v in ((k, col[i]) for k, col in cols.items())}
        errs = list(c.validator.full.iter_errors(payload))
        if errs:
            slow[i] = True
    assert set(fast) == set(slow) and len(slow) > 50
    assert len(records) == 300


def test_validator_without_fast_path_still_validates():
    schema = {"type": "object", "properties": {"a": {"type": "integer", "minimum": 3}},
              "required": ["a"], "additionalProperties": False}
    v = ColumnValidator(schema)
    assert not v.vectorized
    assert v.validate_columns({"a": [1, 5, None]}, 3) == {
        0: ["invalid:a:minimum"], 2: ["invalid:a:type"]}


def test_outbox_mode_publishes_once_and_replays(duck, tmp_path):
    cfg = feed_config(None, tmp_path)
    assert cfg.mode == "outbox"
    with duck.transaction():
        feeds.enqueue(duck, "outpatient_visit", "C001", visits(n=30, day=date(2024, 3, 1)), "L1")
        feeds.enqueue(duck, "outpatient_visit", "C001",
                      visits(n=10, start_key=100, day=date(2024, 3, 2)), "L1")
    st = feeds.publish(duck, cfg)
    assert st.ok and st.acked == 40 and st.dead == 0
    path = tmp_path / "outbox" / "hisx.std.outpatient_visit.v1.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert sorted(e["message_id"] for e in lines) == sorted(feeds.ledger_ids(duck))
    assert all("produced_at" in e for e in lines)
    # offsets in the ledger are the lines' byte positions
    led = ledger(duck)
    raw = path.read_bytes()
    for r in led.head(3).itertuples():
        line = raw[int(r.kafka_offset):].split(b"\n", 1)[0]
        assert json.loads(line)["message_id"] == r.message_id
    assert feeds.publish(duck, cfg).selected == 0  # nothing new
    assert len(path.read_text().splitlines()) == 40
    rp = feeds.replay(duck, "outpatient_visit", "C001", "2024-03-02", "2024-03-02", cfg)
    assert rp.acked == 10
    again = [json.loads(x) for x in path.read_text().splitlines()[40:]]
    assert {e["message_id"] for e in again} == set(
        led[led["source_key"] >= 100]["message_id"])
    assert all(e["replayed"] is True for e in again)


def test_late_rows_of_an_offline_center_are_published_once(duck, tmp_path):
    cfg = feed_config(None, tmp_path)
    with duck.transaction():
        feeds.enqueue(duck, "outpatient_visit", "C002", visits("C002", n=5, day=date(2024, 3, 5)),
                      "L1")
    feeds.publish(duck, cfg)
    backlog = visits("C002", n=8, start_key=50, day=date(2024, 3, 3))  # offline days, late
    for load in ("L2", "L3"):  # the backlog arrives, then the partition is re-run
        with duck.transaction():
            feeds.enqueue(duck, "outpatient_visit", "C002", backlog, load)
        feeds.publish(duck, cfg)
    lines = [json.loads(x) for x in (tmp_path / "outbox" / "hisx.std.outpatient_visit.v1.jsonl")
             .read_text().splitlines()]
    late = [e for e in lines if e["source_key"] >= 50]
    assert len(late) == 8 and len({e["message_id"] for e in late}) == 8
    assert {e["event_time"][:10] for e in late} == {"2024-03-03"}
    assert {e["load_id"] for e in late} == {"L2"}


def test_status_counts_states(duck, tmp_path):
    with duck.transaction():
        feeds.enqueue(duck, "outpatient_visit", "C001", visits(n=4), "L1")
    st = feeds.status(duck)
    assert st[["state", "messages"]].values.tolist() == [["pending", 4]]
    feeds.publish(duck, feed_config(None, tmp_path))
    assert feeds.status(duck)[["state", "messages"]].values.tolist() == [["acked", 4]]


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_a_batch_of_several_centers_enqueues_as_one_per_center(backend, request):
    """An hour's rows of many centers are enqueued in one call: the ledger rows (ids,
    envelopes, keys) equal those of one call per center, and a re-run adds nothing even where
    two centers share source keys."""
    url = "duckdb://" if backend == "duckdb" else request.getfixturevalue("pg_database")
    a, b = visits("C001", n=6), visits("C002", n=4)  # the same source keys 1..4 in both
    both = pd.concat([b, a], ignore_index=True)
    cols = ["message_id", "tenant", "source_key", "row_version", "topic", "msg_key", "envelope"]
    whs = [Warehouse.from_url(url), Warehouse.from_url("duckdb://")]
    try:
        for wh in whs:
            feeds.ensure_ledger(wh)
        one, each = whs
        with one.transaction():
            assert feeds.enqueue(one, "outpatient_visit", None, a, "L1") == 6
        with one.transaction():  # C002's keys 1..4 are C001's too, but not C002's messages yet
            assert feeds.enqueue(one, "outpatient_visit", None, both, "L1") == 4
        with each.transaction():
            for t, df in (("C001", a), ("C002", b)):
                feeds.enqueue(each, "outpatient_visit", t, df, "L1")
        got, want = (ledger(w)[cols].sort_values("message_id").reset_index(drop=True)
                     for w in whs)
        pd.testing.assert_frame_equal(got, want)
        assert set(got["msg_key"]) >= {"C001:1", "C002:1"}
        assert all(json.loads(e)["tenant"] == t for e, t in zip(got["envelope"], got["tenant"],
                                                                 strict=True))
        with one.transaction():  # a re-run: every id is known
            assert feeds.enqueue(one, "outpatient_visit", None, both, "L2") == 0
        newer = visits("C002", n=2, row_version=900)  # new versions of C002's keys 1..2 only
        with one.transaction():
            assert feeds.enqueue(one, "outpatient_visit", None,
                                 pd.concat([newer, a], ignore_index=True), "L3") == 2
        assert one.scalar("SELECT count(*) FROM feed_ledger WHERE tenant = 'C001'") == 6
    finally:
        for wh in whs:
            wh.close()


def test_records_carry_the_envelope_key_and_headers() -> None:
    """Kafka records: key center:source key, value = produced_at + the stored envelope,
    headers schema_id (the DLQ's own on the dead-letter topic), message_id, dataset and
    content-type."""
    import pyarrow as pa

    from hisx.connectors.kafka import Record
    from hisx.pipelines.feeds import DLQ_SCHEMA_ID, DLQ_TOPIC, _records, contract

    batch = pa.table({
        "dataset": ["outpatient_visit", "outpatient_visit", "charge"],
        "topic": ["hisx.std.outpatient_visit.v1", DLQ_TOPIC, "hisx.std.charge.v1"],
        "msg_key": ["C001:1", "C001:2", "C002:9"],
        "envelope": ['{"a":"中文"}', '{"b":1}', '{"c":null}']})
    prefix = '{"produced_at":"2026-11-27T00:00:00.000Z",'

    def headers(ds: str, sid: str, mid: str) -> list:
        return [("schema_id", sid.encode()), ("message_id", mid.encode()),
                ("dataset", ds.encode()), ("content-type", b"application/json")]

    assert _records(batch, ["id-1", "id-2", "id-3"], prefix) == [
        Record("hisx.std.outpatient_visit.v1", b"C001:1",
               (prefix + '"a":"中文"}').encode(),
               headers("outpatient_visit", contract("outpatient_visit").schema_id, "id-1")),
        Record(DLQ_TOPIC, b"C001:2", (prefix + '"b":1}').encode(),
               headers("outpatient_visit", DLQ_SCHEMA_ID, "id-2")),
        Record("hisx.std.charge.v1", b"C002:9", (prefix + '"c":null}').encode(),
               headers("charge", contract("charge").schema_id, "id-3"))]


@pytest.fixture
def any_wh(any_warehouse) -> Warehouse:
    """A ledger on each warehouse kind (publishing's page queries differ in their plans)."""
    feeds.ensure_ledger(any_warehouse)
    return any_warehouse


def _outbox_ids(tmp_path) -> list[str]:
    path = tmp_path / "outbox" / "hisx.std.outpatient_visit.v1.jsonl"
    return [json.loads(x)["message_id"] for x in path.read_text().splitlines()]


def _seq_order(wh: Warehouse) -> list[str]:
    return wh.query_df("SELECT message_id FROM feed_ledger ORDER BY seq")["message_id"].tolist()


def test_pages_send_a_run_and_a_sparse_ledger_once_in_seq_order(any_wh, tmp_path):
    cfg = feed_config(None, tmp_path, batch_size=7)
    with any_wh.transaction():  # one run of consecutive seq: paged by seq windows
        feeds.enqueue(any_wh, "outpatient_visit", "C001", visits(n=30, day=date(2024, 3, 1)), "L1")
    st = feeds.publish(any_wh, cfg)
    assert st.acked == 30 and st.batches == 5
    assert _outbox_ids(tmp_path) == _seq_order(any_wh)
    # a sparse ledger: an old message sent again (its ack lost) and a new run far above it
    with any_wh.transaction():
        feeds.enqueue(any_wh, "outpatient_visit", "C001",
                      visits(n=12, start_key=100, day=date(2024, 3, 2)), "L2")
    old = int(any_wh.scalar("SELECT MIN(seq) FROM feed_ledger"))
    any_wh.execute("UPDATE feed_ledger SET state = 'sent' WHERE seq = :s", {"s": old})
    st = feeds.publish(any_wh, cfg)
    assert st.acked == 13 and st.batches == 2
    ids = _outbox_ids(tmp_path)[30:]
    pending = any_wh.query_df("SELECT message_id FROM feed_ledger WHERE seq = :s OR source_key "
                              ">= 100 ORDER BY seq", {"s": old})["message_id"].tolist()
    assert ids == pending


def test_messages_enqueued_while_a_run_is_paged_are_sent_too(any_wh, tmp_path):
    cfg = feed_config(None, tmp_path, batch_size=4)
    with any_wh.transaction():
        feeds.enqueue(any_wh, "outpatient_visit", "C001", visits(n=10, day=date(2024, 3, 1)), "L1")
    added = []

    def progress(stats):  # another load enqueues after the first page: above the run's end
        if not added:
            added.append(1)
            with any_wh.transaction():
                feeds.enqueue(any_wh, "outpatient_visit", "C002",
                              visits("C002", n=5, start_key=500, day=date(2024, 3, 1)), "L2")

    st = feeds.publish(any_wh, cfg, progress=progress)
    assert st.acked == 15
    assert _outbox_ids(tmp_path) == _seq_order(any_wh)
    st = feeds.status(any_wh)
    assert set(st["state"]) == {"acked"} and st["messages"].sum() == 15


def test_a_window_emptied_by_another_publisher_does_not_end_the_run(any_wh, tmp_path):
    cfg = feed_config(None, tmp_path, batch_size=4)
    with any_wh.transaction():
        feeds.enqueue(any_wh, "outpatient_visit", "C001", visits(n=12, day=date(2024, 3, 1)), "L1")
    seqs = any_wh.query_df("SELECT seq FROM feed_ledger ORDER BY seq")["seq"].tolist()

    def progress(stats):  # after the first page, someone else sends the next four
        if stats.batches == 1:
            any_wh.execute("UPDATE feed_ledger SET state = 'acked' WHERE seq BETWEEN :a AND :b",
                           {"a": seqs[4], "b": seqs[7]})

    st = feeds.publish(any_wh, cfg, progress=progress)
    assert st.acked == 8
    sent = set(_outbox_ids(tmp_path))
    order = _seq_order(any_wh)
    assert sent == set(order[:4] + order[8:])


def _old_ledger(wh: Warehouse) -> None:
    """A ledger as PostgreSQL warehouses made it before: the message id its primary key."""
    for stmt in feeds.ledger_ddl("postgresql"):
        wh.execute(stmt.replace("message_id VARCHAR(36) NOT NULL,",
                                "message_id VARCHAR(36) NOT NULL PRIMARY KEY,"))


@pytest.mark.postgres
@pytest.mark.parametrize("made", ["now", "before"])
def test_postgres_ledger_is_keyed_by_what_the_id_is_made_of(made, pg_database, tmp_path):
    with Warehouse.from_url(pg_database) as wh:
        if made == "before":
            _old_ledger(wh)
        feeds.ensure_ledger(wh)
        idx = dict(wh.query_df("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = "
                               "'feed_ledger'").itertuples(index=False))
        assert idx["feed_ledger_key"].startswith("CREATE UNIQUE INDEX")
        assert idx["feed_ledger_key"].endswith("(dataset, tenant, source_key, row_version)")
        assert ("feed_ledger_pkey" in idx) == (made == "before")
        assert idx["feed_ledger_by_seq"].endswith("(seq)")  # not the sequence's name
        df = visits(n=20)
        with wh.transaction():
            assert feeds.enqueue(wh, "outpatient_visit", "C001", df, "L1") == 20
        with wh.transaction():  # the same versions again, some new ones: the new only
            both = pd.concat([df, visits(n=3, row_version=900)], ignore_index=True)
            assert feeds.enqueue(wh, "outpatient_visit", "C001", both, "L2") == 3
        assert wh.scalar("SELECT count(DISTINCT message_id) FROM feed_ledger") == 23
        # the key refuses a second row of a version, whatever writes it
        with pytest.raises(Exception, match="feed_ledger_key|feed_ledger_pkey"), \
                wh.transaction():
            wh.execute("INSERT INTO feed_ledger (message_id, dataset, tenant, source_key, "
                       "row_version, topic, msg_key, envelope, state, enqueued_at) SELECT "
                       "'x', dataset, tenant, source_key, row_version, topic, msg_key, "
                       "envelope, state, enqueued_at FROM feed_ledger WHERE source_key = 1 "
                       "AND row_version = 900")
        cfg = feed_config(None, tmp_path)
        assert feeds.publish(wh, cfg).acked == 23
        rp = feeds.replay(wh, "outpatient_visit", "C001", "2024-03-01", "2024-03-01", cfg)
        assert rp.acked == 23 and rp.ok
        assert wh.scalar("SELECT count(*) FROM feed_ledger WHERE replayed_at IS NOT NULL") == 23
