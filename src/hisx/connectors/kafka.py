"""Kafka sinks for the push feeds: acks=all, idempotent, retried with backoff.

A sink takes a batch of :class:`Record` and returns one :class:`Delivery` per record, in
order: the (partition, offset) the broker acknowledged, or the error. Nothing here touches
the warehouse; the ledger bookkeeping lives in :mod:`hisx.pipelines.feeds`.

Two producer clients, one contract (``KafkaOptions.client``, env ``HISX_KAFKA_CLIENT``):
``confluent`` (librdkafka, the default: ~5x kafka-python's messages/s on the same broker,
infra-notes §4.1 and BENCHMARKS.md) and ``kafka-python``. Both hash keys with murmur2, so a
key lands on the same partition whichever client sent it (per-key order survives a switch).
Topics are created with kafka-python's admin client in both cases.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

log = logging.getLogger("hisx.feeds.kafka")


class Record(NamedTuple):
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


class Delivery(NamedTuple):
    partition: int | None
    offset: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


CLIENTS = ("confluent", "kafka-python")


def default_client() -> str:
    """``HISX_KAFKA_CLIENT`` (``confluent`` or ``kafka-python``); ``confluent`` if unset."""
    raw = os.environ.get("HISX_KAFKA_CLIENT", "confluent").strip().lower()
    if raw not in CLIENTS:
        raise ValueError(f"HISX_KAFKA_CLIENT must be one of {CLIENTS}, not {raw!r}")
    return raw


@dataclass(frozen=True)
class KafkaOptions:
    """Producer settings; the defaults are production ones, tests shorten the timeouts."""

    bootstrap: str
    client_id: str = "hisx-feeds"
    linger_ms: int = 5
    batch_size: int = 256 * 1024
    retry_backoff_ms: int = 200
    request_timeout_ms: int = 15_000
    delivery_timeout_ms: int = 60_000
    max_block_ms: int = 10_000
    partitions: int = 3
    replication_factor: int = 1
    client: str = field(default_factory=default_client)

    def __post_init__(self) -> None:
        if self.client not in CLIENTS:
            raise ValueError(f"Kafka client must be one of {CLIENTS}, not {self.client!r}")


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def producer(opts: KafkaOptions):
    """An idempotent, acks=all kafka-python producer retrying with backoff until
    ``delivery_timeout_ms``.

    Raises kafka.errors.KafkaError (NoBrokersAvailable) when no broker answers.
    """
    from kafka import KafkaProducer

    return KafkaProducer(
        bootstrap_servers=opts.bootstrap.split(","), client_id=opts.client_id, acks="all",
        enable_idempotence=True, retry_backoff_ms=opts.retry_backoff_ms,
        linger_ms=opts.linger_ms, bootstrap_timeout_ms=opts.max_block_ms,
        batch_size=opts.batch_size, request_timeout_ms=opts.request_timeout_ms,
        delivery_timeout_ms=opts.delivery_timeout_ms, max_block_ms=opts.max_block_ms,
        max_in_flight_requests_per_connection=5,
    )


def ensure_topics(opts: KafkaOptions, topics: Iterable[str]) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    wanted = sorted(set(topics))
    if not wanted:
        return []
    admin = KafkaAdminClient(bootstrap_servers=opts.bootstrap.split(","),
                             client_id=opts.client_id + "-admin",
                             request_timeout_ms=opts.request_timeout_ms)
    try:
        missing = [t for t in wanted if t not in set(admin.list_topics())]
        created = []
        for t in missing:  # one by one: a concurrent creator must not fail the others
            try:
                admin.create_topics([NewTopic(t, opts.partitions, opts.replication_factor)])
                created.append(t)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()


def open_sink(opts: KafkaOptions) -> KafkaSink | ConfluentSink:
    """The sink of ``opts.client``."""
    return ConfluentSink(opts) if opts.client == "confluent" else KafkaSink(opts)


class _Sink:
    """What both sinks share: their options, topic creation, the context manager."""

    def __init__(self, opts: KafkaOptions) -> None:
        self.opts = opts
        self._producer = self._open(opts)

    def _open(self, opts: KafkaOptions):
        raise NotImplementedError

    def prepare(self, topics: Iterable[str]) -> None:
        ensure_topics(self.opts, topics)

    def send_batch(self, records: Sequence[Record]) -> list[Delivery]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> _Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class KafkaSink(_Sink):
    """Send batches through one idempotent kafka-python producer; a context manager."""

    def _open(self, opts: KafkaOptions):
        return producer(opts)

    def send_batch(self, records: Sequence[Record]) -> list[Delivery]:
        from kafka.errors import KafkaError

        p = self._producer
        futures: list = []
        for r in records:
            try:
                futures.append(p.send(r.topic, key=r.key, value=r.value, headers=r.headers))
            except KafkaError as e:  # metadata / buffer timeouts while the broker is away
                futures.append(e)
        try:
            p.flush(timeout=self.opts.delivery_timeout_ms / 1000 + 5)
        except KafkaError as e:
            log.warning("flush did not complete: %s", _error(e))
        out = []
        for f in futures:
            if isinstance(f, BaseException):
                out.append(Delivery(None, None, _error(f)))
            elif not f.is_done:
                out.append(Delivery(None, None, "not acknowledged before the flush timeout"))
            elif f.succeeded():
                md = f.value
                out.append(Delivery(md.partition, md.offset, None))
            else:
                out.append(Delivery(None, None, _error(f.exception)))
        return out

    def close(self) -> None:
        try:
            self._producer.close(timeout=5)
        except Exception as e:  # closing a producer whose broker died must not mask results
            log.warning("producer close: %s", _error(e))


def confluent_producer(opts: KafkaOptions):
    """An idempotent, acks=all librdkafka producer with the same timeouts as :func:`producer`
    and the Java client's murmur2 partitioner. librdkafka's own log goes to ``log``."""
    from confluent_kafka import Producer

    return Producer({
        "bootstrap.servers": opts.bootstrap, "client.id": opts.client_id, "acks": "all",
        "enable.idempotence": True, "linger.ms": opts.linger_ms,
        "batch.size": opts.batch_size, "retry.backoff.ms": opts.retry_backoff_ms,
        "request.timeout.ms": opts.request_timeout_ms,
        "message.timeout.ms": opts.delivery_timeout_ms,
        "socket.connection.setup.timeout.ms": max(1000, opts.max_block_ms),
        "max.in.flight.requests.per.connection": 5, "partitioner": "murmur2_random",
        "queue.buffering.max.messages": 200_000,
    }, logger=log)


class ConfluentSink(_Sink):
    """Send batches through one idempotent librdkafka producer; a context manager.

    A record the local queue cannot take yet waits for deliveries (``poll``) rather than
    failing; one whose delivery times out (``delivery_timeout_ms``: broker away) comes back
    as an error, like :class:`KafkaSink`'s."""

    def _open(self, opts: KafkaOptions):
        return confluent_producer(opts)

    def send_batch(self, records: Sequence[Record]) -> list[Delivery]:
        from confluent_kafka import KafkaException

        p = self._producer
        out: list[Delivery | None] = [None] * len(records)

        def report(i: int):
            def done(err, msg) -> None:
                out[i] = (Delivery(None, None, f"KafkaError: {err.str()}"[:500]) if err
                          else Delivery(msg.partition(), msg.offset(), None))
            return done

        for i, r in enumerate(records):
            while True:
                try:
                    p.produce(r.topic, value=r.value, key=r.key, headers=r.headers,
                              on_delivery=report(i))
                    break
                except BufferError:  # local queue full: let deliveries drain it
                    p.poll(0.05)
                except KafkaException as e:
                    out[i] = Delivery(None, None, _error(e))
                    break
        left = p.flush(self.opts.delivery_timeout_ms / 1000 + 5)
        if left:
            log.warning("flush did not complete: %d message(s) still queued", left)
        return [d or Delivery(None, None, "not acknowledged before the flush timeout")
                for d in out]

    def close(self) -> None:
        try:
            self._producer.flush(5)
        except Exception as e:  # closing a producer whose broker died must not mask results
            log.warning("producer close: %s", _error(e))
