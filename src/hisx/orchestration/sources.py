"""Which sources the code location serves, their engines, high-water marks and health.

Without ``HISX_SOURCES`` there is one source, ``his`` (the demo SQLite file at
``HISX_SOURCE_URL``, resolved at run time). With a sources file, one entry per source; its
centers come from the file's ``tenants`` or else from the source's organizations table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote_plus

import sqlalchemy as sa

from hisx.config import Settings
from hisx.connectors.source.config import SourceConfig, load_sources
from hisx.pipelines import flow
from hisx.simulator.schema import TABLES

DEFAULT_SOURCE = "his"


@dataclass(frozen=True)
class Source:
    name: str
    cfg: SourceConfig | None = None  # None: the demo source at HISX_SOURCE_URL

    def url(self, settings: Settings | None = None) -> str:
        if self.cfg is None:
            return (settings or Settings.from_env()).source_url
        if self.cfg.url:
            return self.cfg.url
        ep = self.cfg.replicas[0]  # read intent; the health sensor gates the whole source
        driver = "mssql+pyodbc" if self.cfg.dialect == "mssql" else f"{self.cfg.dialect}+pyodbc"
        return f"{driver}:///?odbc_connect={quote_plus(ep.connection_string())}"

    def engine(self, settings: Settings | None = None) -> sa.Engine:
        return sa.create_engine(self.url(settings))

    def tenants(self, engine: sa.Engine) -> list[flow.Tenant]:
        if self.cfg is not None and self.cfg.tenants:
            return [flow.Tenant(t.org_code, t.vendor or "") for t in self.cfg.tenants]
        return flow.discover_tenants(engine)


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


def high_waters(engine: sa.Engine) -> dict[str, dict[str, int]]:
    """{table: {org_code: max(row_version)}}: the per-center high-water marks right now."""
    out: dict[str, dict[str, int]] = {}
    with engine.connect() as c:
        for t in TABLES:
            rows = c.execute(sa.select(t.c.org_code, sa.func.max(t.c.row_version))
                             .group_by(t.c.org_code)).fetchall()
            out[t.name] = {str(r[0]): int(r[1]) for r in rows if r[1] is not None}
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
