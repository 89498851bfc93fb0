"""The two producer clients (confluent-kafka, kafka-python) against a real broker (tansu)."""

from __future__ import annotations

import pytest

from hisx.connectors.kafka import ConfluentSink, KafkaOptions, KafkaSink, Record, ensure_topics

from .conftest import feed_config

pytestmark = pytest.mark.kafka
TOPIC = "hisx.std.outpatient_visit.v1"


@pytest.mark.parametrize("client, sink_cls", [("confluent", ConfluentSink),
                                              ("kafka-python", KafkaSink)])
def test_sink_follows_hisx_kafka_client(client, sink_cls, clean_topics, tmp_path, monkeypatch):
    monkeypatch.setenv("HISX_KAFKA_CLIENT", client)
    sink = feed_config(clean_topics, tmp_path).open_sink()
    try:
        assert isinstance(sink, sink_cls)
    finally:
        sink.close()


def test_unknown_client_is_refused(monkeypatch):
    monkeypatch.setenv("HISX_KAFKA_CLIENT", "librdkafka")
    with pytest.raises(ValueError, match="HISX_KAFKA_CLIENT must be one of"):
        KafkaOptions("127.0.0.1:9")
    monkeypatch.delenv("HISX_KAFKA_CLIENT")
    assert KafkaOptions("127.0.0.1:9").client == "confluent"
    with pytest.raises(ValueError, match="Kafka client must be one of"):
        KafkaOptions("127.0.0.1:9", client="java")


def test_both_clients_put_a_key_on_the_same_partition(clean_topics):
    """murmur2 in both: a center:key keeps its partition (and its order) across a switch."""
    ensure_topics(KafkaOptions(clean_topics), [TOPIC])
    keys = [f"C{c:03d}:{k}".encode() for c in range(5) for k in range(60)]
    placed = {}
    for cls, client in ((KafkaSink, "kafka-python"), (ConfluentSink, "confluent")):
        with cls(KafkaOptions(clean_topics, client=client)) as sink:
            got = sink.send_batch([Record(TOPIC, k, b"{}", []) for k in keys])
        assert all(d.ok for d in got)
        placed[client] = [d.partition for d in got]
    assert placed["confluent"] == placed["kafka-python"]
    assert len(set(placed["confluent"])) == 3  # the keys spread over every partition
