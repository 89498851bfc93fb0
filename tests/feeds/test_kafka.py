"""Feeds over a real Kafka-protocol broker (tansu on loopback)."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from hisx.connectors.kafka import KafkaOptions, ensure_topics
from hisx.pipelines import feeds

from .conftest import envelope, feed_config, read_all
from .samples import visits

pytestmark = pytest.mark.kafka
TOPIC = "hisx.std.outpatient_visit.v1"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "regional_platform_consumer.py"


@pytest.fixture(autouse=True, params=["confluent", "kafka-python"])
def kafka_client(request, monkeypatch) -> str:
    """Every test runs with each producer client (``HISX_KAFKA_CLIENT``)."""
    monkeypatch.setenv("HISX_KAFKA_CLIENT", request.param)
    return request.param


def example():
    spec = importlib.util.spec_from_file_location("regional_platform_consumer", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def fill(wh, centers=("C001", "C002"), n=200, day=date(2024, 3, 1)):
    for c in centers:
        with wh.transaction():
            feeds.enqueue(wh, "outpatient_visit", c, visits(c, n=n, day=day), "L1")


def test_consumer_group_reads_exactly_the_acked_messages(duck, clean_topics, tmp_path):
    fill(duck)
    st = feeds.publish(duck, feed_config(clean_topics, tmp_path, batch_size=150))
    assert st.ok and st.acked == 400 and st.batches == 3
    acked = feeds.ledger_ids(duck)
    assert len(acked) == 400
    led = duck.query_df("SELECT message_id, kafka_partition, kafka_offset, msg_key "
                        "FROM feed_ledger")
    assert led["kafka_offset"].notna().all()
    mod = example()
    store = mod.Store()
    got = mod.consume(clean_topics, store, group="it-group", idle_s=3, max_s=40,
                      session_timeout_ms=6000, heartbeat_interval_ms=1000)
    assert got.invalid == [] and got.duplicates == 0
    assert got.messages == 400 and store.ids() == acked
    # every record: key (center:source key), headers, and the partition/offset in the ledger
    records = read_all(clean_topics, [TOPIC])
    by_id = {r.message_id: r for r in led.itertuples()}
    for rec in records:
        env = envelope(rec)
        h = dict(rec.headers)
        assert h["message_id"].decode() == env["message_id"]
        assert h["schema_id"].decode() == feeds.contract("outpatient_visit").schema_id
        row = by_id[env["message_id"]]
        assert rec.key.decode() == row.msg_key == f"{env['tenant']}:{env['source_key']}"
        assert (rec.partition, rec.offset) == (row.kafka_partition, row.kafka_offset)
    # all versions of one key land in one partition, in row-version order
    with duck.transaction():
        feeds.enqueue(duck, "outpatient_visit", "C001", visits("C001", n=1, row_version=999),
                      "L2")
    feeds.publish(duck, feed_config(clean_topics, tmp_path))
    key1 = [envelope(r) for r in read_all(clean_topics, [TOPIC]) if r.key == b"C001:1"]
    assert [e["row_version"] for e in key1] == [100, 999]


def test_invalid_payload_lands_in_dead_letter_topic(duck, clean_topics, tmp_path):
    df = visits(n=5)
    df.loc[0, "dept_code"] = "ZZ"
    df["is_deleted"] = df["is_deleted"].astype(object)
    df.loc[4, "is_deleted"] = None
    with duck.transaction():
        feeds.enqueue(duck, "outpatient_visit", "C001", df, "L1")
    st = feeds.publish(duck, feed_config(clean_topics, tmp_path))
    assert st.ok and (st.acked, st.dead) == (3, 2)
    dlq = [envelope(r) for r in read_all(clean_topics, [feeds.DLQ_TOPIC])]
    assert {e["source_key"]: e["reasons"] for e in dlq} == {
        1: ["invalid:dept_code:enum"], 5: ["invalid:is_deleted:type"]}
    assert all(e["original_topic"] == TOPIC for e in dlq)
    states = duck.query_df("SELECT source_key, state FROM feed_ledger ORDER BY source_key")
    assert states["state"].tolist() == ["dead", "acked", "acked", "acked", "dead"]
    assert len(read_all(clean_topics, [TOPIC])) == 3


def test_rerun_sends_nothing_and_replay_resends_the_exact_range(duck, clean_topics, tmp_path):
    cfg = feed_config(clean_topics, tmp_path)
    for d in (1, 2, 3):
        fill(duck, centers=("C001", "C002"), n=20, day=date(2024, 3, d)) if d == 1 else None
    with duck.transaction():
        feeds.enqueue(duck, "outpatient_visit", "C001",
                      visits("C001", n=15, start_key=500, day=date(2024, 3, 2)), "L2")
        feeds.enqueue(duck, "outpatient_visit", "C001",
                      visits("C001", n=7, start_key=900, day=date(2024, 3, 3)), "L2")
    first = feeds.publish(duck, cfg)
    assert first.acked == 62
    before = len(read_all(clean_topics, [TOPIC]))
    again = feeds.publish(duck, cfg)
    assert again.selected == 0 and again.acked == 0
    assert len(read_all(clean_topics, [TOPIC])) == before == 62
    rp = feeds.replay(duck, "outpatient_visit", "C001", date(2024, 3, 2), date(2024, 3, 2), cfg)
    assert rp.ok and rp.acked == 15
    records = [envelope(r) for r in read_all(clean_topics, [TOPIC])]
    replayed = [e for e in records if e.get("replayed")]
    want = set(duck.query_df(
        "SELECT message_id FROM feed_ledger WHERE tenant = 'C001' AND "
        "business_time >= '2024-03-02' AND business_time < '2024-03-03'")["message_id"])
    assert {e["message_id"] for e in replayed} == want and len(replayed) == 15
    originals = {e["message_id"]: e for e in records if not e.get("replayed")}
    for e in replayed:  # same ids and payloads
        assert e["payload"] == originals[e["message_id"]]["payload"]


def test_broker_killed_mid_publish_then_recovers(duck, broker, tmp_path):
    fill(duck, centers=("C001", "C002", "C003"), n=500)  # 1500 messages
    ensure_topics(KafkaOptions(broker.bootstrap), [TOPIC])
    cfg = feed_config(broker.bootstrap, tmp_path, batch_size=200)
    seen_before_kill: list = []

    def kill_after_two_batches(stats):
        if stats.batches == 2:
            seen_before_kill.extend(envelope(r)["message_id"]
                                    for r in read_all(broker.bootstrap, [TOPIC]))
            broker.kill()

    run1 = feeds.publish(duck, cfg, progress=kill_after_two_batches)
    assert not run1.ok and run1.acked == 400 and run1.failed == 200
    states = Counter(duck.query_df("SELECT state FROM feed_ledger")["state"])
    assert states == {"acked": 400, "sent": 200, "pending": 900}
    assert set(seen_before_kill) == feeds.ledger_ids(duck)

    run2 = feeds.publish(duck, cfg)  # broker still down: nothing changes
    assert not run2.ok and run2.acked == 0
    assert Counter(duck.query_df("SELECT state FROM feed_ledger")["state"]) == states

    broker.start()  # same port, empty memory storage: re-create the topics
    ensure_topics(KafkaOptions(broker.bootstrap), [TOPIC])
    run3 = feeds.publish(duck, cfg)
    assert run3.ok and run3.acked == 1100
    assert Counter(duck.query_df("SELECT state FROM feed_ledger")["state"]) == {"acked": 1500}
    after = [envelope(r)["message_id"] for r in read_all(broker.bootstrap, [TOPIC])]
    ledger = feeds.ledger_ids(duck)
    assert set(seen_before_kill) | set(after) == ledger
    # a consumer that dedups on message id sees every message once
    mod = example()
    store = mod.Store()
    for env_id in seen_before_kill + after:
        store.add({"message_id": env_id, "dataset": "outpatient_visit", "tenant": "",
                   "source_key": 0, "row_version": 0, "payload": {}})
    assert store.ids() == ledger and len(seen_before_kill) + len(after) == len(ledger)
    attempts = duck.query_df("SELECT attempts, count(*) AS n FROM feed_ledger GROUP BY 1")
    assert dict(zip(attempts["attempts"], attempts["n"], strict=True)) == {1: 1300, 2: 200}


def test_dedup_consumer_sees_no_duplicates_after_resend(duck, clean_topics, tmp_path):
    """Sent-but-unacknowledged messages that did reach the broker are sent again; the
    example consumer drops the second copy by message id."""
    fill(duck, centers=("C001",), n=50)
    cfg = feed_config(clean_topics, tmp_path)
    assert feeds.publish(duck, cfg).acked == 50
    # simulate a crash after the broker wrote but before the ledger recorded the acks
    duck.execute("UPDATE feed_ledger SET state = 'sent' WHERE source_key <= 10")
    st = feeds.publish(duck, cfg)
    assert st.acked == 10
    assert len(read_all(clean_topics, [TOPIC])) == 60
    mod = example()
    store = mod.Store()
    got = mod.consume(clean_topics, store, group="dedup-group", idle_s=3, max_s=40,
                      session_timeout_ms=6000, heartbeat_interval_ms=1000)
    assert (got.messages, got.stored, got.duplicates) == (60, 50, 10)
    assert store.ids() == feeds.ledger_ids(duck)


def test_outage_at_start_keeps_everything_pending(duck, tmp_path):
    from .conftest import free_port

    fill(duck, centers=("C001",), n=10)
    st = feeds.publish(duck, feed_config(f"127.0.0.1:{free_port()}", tmp_path))
    assert not st.ok and st.selected == 0
    assert set(duck.query_df("SELECT state FROM feed_ledger")["state"]) == {"pending"}
    assert json.dumps(st.as_dict())

