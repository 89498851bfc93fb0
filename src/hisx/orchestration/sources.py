"""Which sources the code location serves, their engines, high-water marks and health.

Without ``HISX_SOURCES`` there is one source, ``his`` (the demo SQLite file at
``HISX_SOURCE_URL``, resolved at run time). With a sources file, one entry per source; its
centers come from the file's ``tenants`` or else from the source's organizations table.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from hisx.config import Settings
from hisx.connectors.source.config import SourceConfig, load_sources
from hisx.pipelines import flow
from hisx.simulator.schema import TABLES

DEFAULT_SOURCE = "his"


class NoReader(RuntimeError):
    """No replica of a replicated source is healthy right now and the policy does not allow
    reading the primary (``wait`` / ``fail``)."""


@dataclass(frozen=True)
class Source:
    name: str
    cfg: SourceConfig | None = None  # None: the demo source at HISX_SOURCE_URL

    @property
    def replicated(self) -> bool:
        """Read through routed replicas (ODBC endpoints), not one SQLAlchemy engine."""
        return self.cfg is not None and self.cfg.url is None

    def url(self, settings: Settings | None = None) -> str:
        if self.cfg is None:
            return (settings or Settings.from_env()).source_url
        if self.cfg.url:
            return self.cfg.url
        raise ValueError(f"source {self.name!r} has replicas, not a URL: use Source.reader()")

    def engine(self, settings: Settings | None = None) -> sa.Engine:
        return sa.create_engine(self.url(settings))

    @contextmanager
    def reader(self, settings: Settings | None = None) -> Iterator[tuple[Any, str]]:
        """(where to read, its name): a SQLAlchemy engine for a single database; for a
        replicated source the endpoint its routing policy picks right now — a healthy
        replica, else the primary under ``primary``; never waits (raises
        :class:`NoReader`), so a sensor tick stays short."""
        if not self.replicated:
            engine = self.engine(settings)
            try:
                yield engine, self.name
            finally:
                engine.dispose()
            return
        from hisx.connectors.source.extract import SourceExtractor

        ex = SourceExtractor(self.cfg)
        try:
            ep = route_now(ex)
            yield ep, ep.name
        finally:
            ex.close()

    def tables(self) -> list[sa.Table]:
        """The source tables to watch (schema-qualified for a configured source)."""
        if self.cfg is None:
            return list(TABLES)
        return [self.cfg.table(n) for n in self.cfg.tables]

    def tenants(self, reader: Any = None) -> list[flow.Tenant]:
        if self.cfg is not None and self.cfg.tenants:
            return [flow.Tenant(t.org_code, t.vendor or "") for t in self.cfg.tenants]
        if isinstance(reader, sa.Engine):
            return flow.discover_tenants(reader)
        t = self.cfg.table("organizations")  # a replicated source without a tenants list
        rows = reader.query(sa.select(t.c.org_code, t.c.his_vendor, t.c.org_name)
                            .order_by(t.c.org_code))
        return [flow.Tenant(str(a), str(b), str(c)) for a, b, c in rows]


def route_now(ex) -> Any:
    """The reader the source's policy routes to now (see :meth:`Source.reader`)."""
    reasons = []
    for ep in ex.replicas:
        h = ex.health(ep)
        if h.healthy:
            return ep
        reasons.append(f"{ep.name}: {h.reason}")
    if ex.cfg.policies.on_no_healthy_replica == "primary":
        return ex.primary
    raise NoReader(f"source {ex.cfg.name!r}: no healthy replica ({'; '.join(reasons)}), "
                   f"policy {ex.cfg.policies.on_no_healthy_replica}")


def configured_sources(settings: Settings | None = None) -> list[Source]:
    s = settings or Settings.from_env()
    if not s.sources_file:
        return [Source(DEFAULT_SOURCE)]
    return [Source(name, cfg) for name, cfg in load_sources(s.sources_file).items()]


def source_named(name: str) -> Source:
    for src in configured_sources():
        if src.name == name:
            return src
    raise KeyError(f"unknown source {name!r}")


def high_waters(reader: Any, tables: list[sa.Table] | None = None,
                since: dict[str, int] | None = None) -> dict[str, dict[str, int]]:
    """{table: {org_code: max(row_version)}}: the per-center high-water marks right now, on
    a SQLAlchemy engine or a replica endpoint (anything with ``query(statement)``).

    ``since`` {table: version} reads only rows above it (an index range on ``row_version``
    instead of a full scan); centers absent from the answer have no row above it. With the
    lowest mark of the previous tick as ``since``, every center whose mark moved is in the
    answer with its exact new mark (a mark that moved ends above the old lowest one), and an
    idle city costs an index range over the rows written since its least recent center."""
    out: dict[str, dict[str, int]] = {}
    conn = reader.connect() if isinstance(reader, sa.Engine) else None
    try:
        for t in tables if tables is not None else TABLES:
            stmt = sa.select(t.c.org_code, sa.func.max(t.c.row_version)).group_by(t.c.org_code)
            if since and since.get(t.name) is not None:
                stmt = stmt.where(t.c.row_version > int(since[t.name]))
            rows = conn.execute(stmt).fetchall() if conn is not None else reader.query(stmt)
            out[t.name] = {str(r[0]): int(r[1]) for r in rows if r[1] is not None}
    finally:
        if conn is not None:
            conn.close()
    return out


# -- replica health (state kept in a file so sensors never open the single-writer warehouse) --
def _health_path(name: str, settings: Settings | None = None) -> Path:
    return (settings or Settings.from_env()).home / "state" / "source_health" / f"{name}.json"


def evaluate_health(src: Source) -> dict:
    """Healthy unless every replica is unhealthy and the policy is ``wait`` (then paused)."""
    now = datetime.now().isoformat(timespec="seconds")
    if src.cfg is None or src.cfg.url is not None:
        return {"source": src.name, "paused": False, "checked_at": now,
                "replicas": [], "reason": "single database (no replicas): always healthy"}
    from hisx.connectors.source.extract import SourceExtractor

    ex = SourceExtractor(src.cfg)
    try:
        hs = [ex.health(ep) for ep in ex.replicas]
    finally:
        ex.close()
    healthy = any(h.healthy for h in hs)
    paused = not healthy and src.cfg.policies.on_no_healthy_replica == "wait"
    return {"source": src.name, "paused": paused, "checked_at": now,
            "replicas": [{"name": h.endpoint, "healthy": h.healthy, "lag": h.lag,
                          "reason": h.reason} for h in hs],
            "reason": "no healthy replica, policy wait" if paused else ""}


def write_health(state: dict, settings: Settings | None = None) -> None:
    p = _health_path(state["source"], settings)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(state), encoding="utf-8")


def read_health(name: str, settings: Settings | None = None) -> dict:
    p = _health_path(name, settings)
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else {"paused": False}
