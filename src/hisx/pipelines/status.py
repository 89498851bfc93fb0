"""Center status: is each center's data still arriving? (offline detection, no Dagster).

A center that keeps working offline (离线应急) stops sending rows; its source rows stop
advancing. During opening hours a center whose newest arrival (``updated_at`` in ODS) is
older than ``stale_after`` is flagged ``offline``; outside opening hours silence is normal
(``closed``). The result is written to ``center_status`` (one row per tenant, replaced) so
the API and the Dagster freshness check read the same answer, and it never fails a run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import pandas as pd

from hisx.connectors.warehouse import Warehouse

DDL = """CREATE TABLE IF NOT EXISTS center_status (
    tenant VARCHAR(40) NOT NULL, status VARCHAR(20) NOT NULL, last_arrival TIMESTAMP,
    silent_minutes DOUBLE PRECISION, checked_at TIMESTAMP NOT NULL)"""

#: Tables whose arrivals show a center is working (registrations, charges happen all day).
ACTIVITY_TABLES = ("registrations", "charges")


@dataclass(frozen=True)
class CenterStatus:
    tenant: str
    status: str  # online | offline | closed | unknown
    last_arrival: datetime | None
    silent_minutes: float | None
    checked_at: datetime

    def as_dict(self) -> dict:
        return asdict(self)


def classify(last: datetime | None, now: datetime, *, opening: tuple[int, int] = (8, 17),
             stale_after: timedelta = timedelta(hours=2)) -> str:
    """online / offline / closed / unknown for one center's newest arrival."""
    if last is None:
        return "unknown"
    if now - last <= stale_after:
        return "online"
    return "offline" if opening[0] <= now.hour < opening[1] else "closed"


def last_arrivals(wh: Warehouse, tenants: Iterable[str]) -> dict[str, datetime | None]:
    """Newest ``updated_at`` per tenant over the activity tables in ODS."""
    out: dict[str, datetime | None] = {t: None for t in tenants}
    for table in ACTIVITY_TABLES:
        df = wh.query_df(f"SELECT org_code, max(updated_at) AS m FROM ods_{table} "
                         "GROUP BY org_code")
        for code, m in zip(df["org_code"], df["m"], strict=True):
            if code in out and pd.notna(m):
                m = pd.Timestamp(m).to_pydatetime()
                out[code] = m if out[code] is None else max(out[code], m)
    return out


def refresh_center_status(wh: Warehouse, tenants: Iterable[str], now: datetime | None = None,
                          **kw) -> list[CenterStatus]:
    """Compute and store the status of each tenant (replaces its previous row)."""
    now = now or datetime.now()
    wh.execute(DDL)
    out = []
    for tenant, last in last_arrivals(wh, list(tenants)).items():
        silent = (now - last).total_seconds() / 60 if last is not None else None
        out.append(CenterStatus(tenant, classify(last, now, **kw), last, silent, now))
    with wh.transaction():
        for s in out:
            wh.execute("DELETE FROM center_status WHERE tenant = :t", {"t": s.tenant})
            wh.execute("INSERT INTO center_status VALUES (:tenant, :status, :last_arrival, "
                       ":silent_minutes, :checked_at)", s.as_dict())
    return out
