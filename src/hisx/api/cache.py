"""Response cache for the share API's non-person-level reads (marts, centers, data quality,
named queries), keyed by (route, authorized tenant, parameters, format) and valid for one
*warehouse version*.

Why: a mart page is the same bytes for every caller of a tenant until the pipeline writes
again, while computing it costs a DuckDB open (~20 ms in the default ``per_request`` mode),
the query and the JSON encoding. A hit skips all three; authentication, authorization (and
the audit of every denial) still run on every request, before the lookup.

Invalidation: the warehouse version is what :meth:`hisx.api.db.Reader.version` reads before
each query (for DuckDB: device, inode, size, mtime and ctime of the file and its ``.wal``).
An entry is served only while the version is the one it was computed under, so a pipeline
write invalidates it on the next request. Against coarse file timestamps (a write in the same
clock tick as the read, same size) an entry is stored only when no warehouse file changed in
the last :data:`SETTLE_SECONDS` ("racy git" rule): every later write then carries a newer
timestamp. Entries also expire after ``ttl`` seconds whatever the version.

Person-level reads (standardized records, person history, person-level marts) never go
through this cache: each of them is read and audited on every request.

Memory is bounded: at most ``max_entries`` entries and ``max_bytes`` of bodies (LRU), and no
body larger than ``max_entry_bytes`` is kept (bulk Parquet pages pass through).
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

#: An entry is stored only if no warehouse file changed within this many seconds.
SETTLE_SECONDS = 1.0
DEFAULT_TTL = 60.0


@dataclass(frozen=True)
class Version:
    """What an entry is valid for (``stamp``), and whether it is safe to store under it."""

    stamp: Hashable
    settled: bool


def file_version(*paths: str, now: float | None = None) -> Version:
    """The version of a set of files: (dev, inode, size, mtime, ctime) of each, None if
    absent; settled when none changed in the last :data:`SETTLE_SECONDS`."""
    now = time.time() if now is None else now
    parts: list[tuple[int, ...] | None] = []
    newest = 0
    for p in paths:
        try:
            st = os.stat(p)
        except FileNotFoundError:
            parts.append(None)
            continue
        parts.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        newest = max(newest, st.st_mtime_ns, st.st_ctime_ns)
    return Version(tuple(parts), now - newest / 1e9 >= SETTLE_SECONDS)


@dataclass(frozen=True)
class Cached:
    """A response as bytes: replayed as a new Response on every hit."""

    body: bytes
    status: int
    media_type: str | None
    headers: tuple[tuple[str, str], ...]


@dataclass
class _Entry:
    stamp: Hashable
    at: float
    value: Cached


class ResponseCache:
    """LRU of :class:`Cached` responses per (key, warehouse version); thread-safe."""

    def __init__(self, *, ttl: float = DEFAULT_TTL, max_entries: int = 1024,
                 max_bytes: int = 64 << 20, max_entry_bytes: int = 1 << 20) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = self.stores = 0

    @classmethod
    def from_env(cls) -> ResponseCache:
        """``HISX_API_CACHE_SECONDS`` (default 60; 0 turns the cache off)."""
        return cls(ttl=float(os.environ.get("HISX_API_CACHE_SECONDS", DEFAULT_TTL)))

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key: Hashable, version: Version) -> Cached | None:
        now = time.monotonic()
        with self._lock:
            e = self._entries.get(key)
            if e is not None and e.stamp == version.stamp and now - e.at < self.ttl:
                self._entries.move_to_end(key)
                self.hits += 1
                return e.value
            if e is not None:  # stale: another warehouse version, or expired
                self._drop(key)
            self.misses += 1
            return None

    def put(self, key: Hashable, version: Version, value: Cached) -> bool:
        """Keep ``value`` for ``key`` under ``version`` (read *before* computing it)."""
        size = len(value.body)
        if not (self.enabled and version.settled and size <= self.max_entry_bytes):
            return False
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._entries[key] = _Entry(version.stamp, time.monotonic(), value)
            self._bytes += size
            self.stores += 1
            while self._entries and (len(self._entries) > self.max_entries
                                     or self._bytes > self.max_bytes):
                self._drop(next(iter(self._entries)))
        return True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def _drop(self, key: Hashable) -> None:
        e = self._entries.pop(key)
        self._bytes -= len(e.value.body)
