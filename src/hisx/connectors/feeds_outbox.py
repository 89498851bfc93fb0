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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hisx.connectors.kafka import Delivery, Record


def _lines(values: pa.Array) -> tuple[memoryview, np.ndarray]:
    """The values as newline-terminated lines in one buffer, and each line's start in it.

    Arrow keeps a string array's bytes contiguous: appending "\\n" to every value and slicing
    the data buffer between the first and last offsets is the whole JSON-lines blob, without
    creating a Python string per message.
    """
    lines = pc.binary_join_element_wise(values, pa.scalar("\n"), "")
    lines = lines.cast(pa.large_string())
    offs = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset:
                                                              lines.offset + len(lines) + 1]
    data = memoryview(lines.buffers()[2])[offs[0]:offs[-1]]
    return data, (offs[:-1] - offs[0]).astype(np.int64)


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

    def send_columns(self, topics: pa.ChunkedArray | pa.Array,
                     values: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, pa.Array]:
        """Column-wise :meth:`send_batch`: (offsets, errors) aligned with the inputs.

        One write and one fsync per topic file; offsets are the byte positions of the lines.
        """
        topics = pa.chunked_array([topics]) if isinstance(topics, pa.Array) else topics
        values = pa.chunked_array([values]) if isinstance(values, pa.Array) else values
        topics, values = topics.combine_chunks(), values.combine_chunks()
        n = len(values)
        offsets = np.zeros(n, dtype=np.int64)
        errors: list[str | None] = [None] * n
        for topic in pc.unique(topics).to_pylist():
            idx = np.flatnonzero(pc.equal(topics, topic).to_numpy(zero_copy_only=False))
            blob, starts = _lines(values.take(pa.array(idx)))
            try:
                with open(outbox_file(self.dir, topic), "ab") as f:
                    pos = f.seek(0, os.SEEK_END)
                    f.write(blob)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                for i in idx:
                    errors[i] = f"{type(e).__name__}: {e}"
                continue
            offsets[idx] = starts + pos
        return pa.array(offsets, pa.int64()), pa.array(errors, pa.string())

    def close(self) -> None:
        pass

    def __enter__(self) -> FileSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
