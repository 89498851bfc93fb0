"""Example consumer of the hisx push feeds, as the regional platform would run it.

Subscribes to every ``hisx.std.*`` topic in a consumer group, validates each envelope's
payload against the dataset's JSON Schema (compiled once per schema id), skips message ids it
has already processed (a SQLite table: at-least-once delivery becomes effectively-once
processing), and commits offsets only after the batch is processed and stored. Invalid
messages are counted and kept aside, never silently dropped.

    python examples/regional_platform_consumer.py --bootstrap 127.0.0.1:29092 --db seen.sqlite

Schemas come from the installed ``hisx`` package here; a platform without it would load them
from the AsyncAPI document (``hisx feeds asyncapi``).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator

TOPICS = r"^hisx\.std\..*\.v\d+$"


def hisx_schemas() -> dict[str, Any]:
    """schema id -> JSON Schema, from the hisx package."""
    from hisx.standards.datasets import DATASETS, load_schema

    out = {}
    for name in DATASETS:
        s = load_schema(name)
        out[s["$id"]] = s
    return out


@dataclass
class Processed:
    messages: int = 0
    stored: int = 0
    duplicates: int = 0
    invalid: list[tuple[str, list[str]]] = field(default_factory=list)


class Store:
    """The platform's side: processed message ids and the records (SQLite)."""

    def __init__(self, path: str = ":memory:") -> None:
        self.db = sqlite3.connect(path)
        self.db.execute("CREATE TABLE IF NOT EXISTS seen (message_id TEXT PRIMARY KEY, "
                        "dataset TEXT, tenant TEXT, source_key INTEGER, row_version INTEGER, "
                        "payload TEXT)")

    def add(self, env: dict[str, Any]) -> bool:
        """Store one message; False when its message id was processed before."""
        cur = self.db.execute(
            "INSERT OR IGNORE INTO seen VALUES (?, ?, ?, ?, ?, ?)",
            (env["message_id"], env["dataset"], env["tenant"], env["source_key"],
             env["row_version"], json.dumps(env["payload"], ensure_ascii=False)))
        return cur.rowcount == 1

    def commit(self) -> None:
        self.db.commit()

    def ids(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT message_id FROM seen")}


def consume(bootstrap: str, store: Store, *, group: str = "regional-platform",
            schemas: dict[str, Any] | None = None, idle_s: float = 5.0,
            max_s: float = 120.0, session_timeout_ms: int = 45_000,
            heartbeat_interval_ms: int = 3_000,
            stop: Callable[[Processed], bool] | None = None) -> Processed:
    """Consume until idle ``idle_s`` after data (or ``max_s``, or ``stop``); commit per batch."""
    from kafka import KafkaConsumer

    validators = {sid: Draft202012Validator(s) for sid, s in (schemas or hisx_schemas()).items()}
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                      auto_offset_reset="earliest", session_timeout_ms=session_timeout_ms,
                      heartbeat_interval_ms=heartbeat_interval_ms, max_poll_records=2000)
    c.subscribe(pattern=TOPICS)
    out = Processed()
    t0 = last = time.monotonic()
    try:  # idle time counts from the first message (joining a group takes a while)
        while time.monotonic() - t0 < max_s and not (
                out.messages and time.monotonic() - last >= idle_s):
            batch = c.poll(timeout_ms=500)
            if not batch:
                continue
            last = time.monotonic()
            for records in batch.values():
                for r in records:
                    out.messages += 1
                    env = json.loads(r.value)
                    headers = dict(r.headers or [])
                    sid = headers.get("schema_id", b"").decode() or env.get("schema_id")
                    v = validators.get(sid)
                    errors = ([e.message for e in v.iter_errors(env.get("payload"))] if v
                              else [f"unknown schema {sid}"])
                    if errors:
                        out.invalid.append((env.get("message_id", "?"), errors))
                    elif store.add(env):
                        out.stored += 1
                    else:
                        out.duplicates += 1
            store.commit()  # processed and stored first ...
            c.commit()      # ... then the offsets: a crash in between only re-delivers
            if stop is not None and stop(out):
                break
    finally:
        c.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--db", default="platform-seen.sqlite")
    ap.add_argument("--group", default="regional-platform")
    ap.add_argument("--idle", type=float, default=10.0)
    a = ap.parse_args()
    p = consume(a.bootstrap, Store(a.db), group=a.group, idle_s=a.idle, max_s=1e9)
    print(json.dumps({"messages": p.messages, "stored": p.stored, "duplicates": p.duplicates,
                      "invalid": len(p.invalid)}))


if __name__ == "__main__":
    main()
