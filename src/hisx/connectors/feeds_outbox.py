"""Local outbox sink: the feed without a broker, one JSON-lines file per topic.

Used when no bootstrap servers are configured (the embedded default, ``make demo``). Each
line is one envelope, exactly the bytes a Kafka consumer would get as the message value. A
record counts as acknowledged once its line is written and the file fsynced; its "offset"
is the byte position of the line in the file (partition 0).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from hisx.connectors.kafka import Delivery, Record


def outbox_file(outbox_dir: Path, topic: str) -> Path:
    return Path(outbox_dir) / f"{topic}.jsonl"


class FileSink:
    """Append records to ``<outbox_dir>/<topic>.jsonl``, fsync per batch."""

    def __init__(self, outbox_dir: Path) -> None:
        self.dir = Path(outbox_dir)
        self.dir.mkdir(parents=True, exist_ok=True)

    def prepare(self, topics: Iterable[str]) -> None:
        for t in topics:
            outbox_file(self.dir, t).touch()

    def send_batch(self, records: Sequence[Record]) -> list[Delivery]:
        by_topic: dict[str, list[int]] = {}
        for i, r in enumerate(records):
            by_topic.setdefault(r.topic, []).append(i)
        out: list[Delivery | None] = [None] * len(records)
        for topic, idx in by_topic.items():
            try:
                with open(outbox_file(self.dir, topic), "ab") as f:
                    pos = f.seek(0, os.SEEK_END)
                    offsets = []
                    for i in idx:
                        offsets.append(pos)
                        line = records[i].value + b"\n"
                        f.write(line)
                        pos += len(line)
                    f.flush()
                    os.fsync(f.fileno())
                for i, off in zip(idx, offsets, strict=True):
                    out[i] = Delivery(0, off, None)
            except OSError as e:
                for i in idx:
                    out[i] = Delivery(None, None, f"{type(e).__name__}: {e}")
        return [d for d in out if d is not None]

    def close(self) -> None:
        pass

    def __enter__(self) -> FileSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
