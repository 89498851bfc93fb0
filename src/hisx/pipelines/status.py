"""Center status: is each center's data still arriving? (offline detection, no Dagster).

A center that keeps working offline (离线应急) stops sending rows; its source rows stop
advancing. The rule: a center is ``offline`` when its newest arrival (``updated_at`` in ODS,
stamped by the source) is followed by more than ``stale_after`` of *opening hours* without
an arrival, up to the reference time; silence outside opening hours is normal (``closed``).

The reference time is, by default, the **source's own clock**: the newest arrival of any
center in the warehouse. Other centers that keep working move it forward, so a silent
center stands out whatever the wall clock says (historical or replayed data, a delayed
extraction), and a pause of the whole pipeline does not flag every center at once.
``clock="wall"`` uses the wall clock instead (a live region where every center should be
sending), and an explicit ``now`` (``HISX_STATUS_NOW``) pins it. The result is written to
``center_status`` (one row per tenant, replaced) so the API and the Dagster freshness check
read the same answer, and it never fails a run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, time, timedelta

import pandas as pd

from hisx.connectors.warehouse import Warehouse

DDL = """CREATE TABLE IF NOT EXISTS center_status (
    tenant VARCHAR(40) NOT NULL, status VARCHAR(20) NOT NULL, last_arrival TIMESTAMP,
    silent_minutes DOUBLE PRECISION, silent_opening_minutes DOUBLE PRECISION,
    reference_time TIMESTAMP, clock VARCHAR(10), checked_at TIMESTAMP NOT NULL)"""
COLUMNS = ("tenant", "status", "last_arrival", "silent_minutes", "silent_opening_minutes",
           "reference_time", "clock", "checked_at")

#: Tables whose arrivals show a center is working (registrations, charges happen all day).
ACTIVITY_TABLES = ("registrations", "charges")
CLOCKS = ("source", "wall")


@dataclass(frozen=True)
class CenterStatus:
    tenant: str
    status: str  # online | offline | closed | unknown
    last_arrival: datetime | None
    silent_minutes: float | None  # reference - last arrival
    silent_opening_minutes: float | None  # the part of it inside opening hours
    reference_time: datetime | None
    clock: str
    checked_at: datetime

    def as_dict(self) -> dict:
        return asdict(self)


def opening_minutes(a: datetime, b: datetime, opening: tuple[int, int] = (8, 17)) -> float:
    """Minutes of opening hours (every day, ``opening[0]``:00 to ``opening[1]``:00) in
    ``[a, b]``."""
    if b <= a:
        return 0.0
    total, day = 0.0, a.date()
    while day <= b.date():
        lo = max(a, datetime.combine(day, time(opening[0])))
        hi = min(b, datetime.combine(day, time(0)) + timedelta(hours=opening[1]))
        total += max(0.0, (hi - lo).total_seconds() / 60)
        day += timedelta(days=1)
    return total


def classify(last: datetime | None, now: datetime, *, opening: tuple[int, int] = (8, 17),
             stale_after: timedelta = timedelta(hours=2)) -> str:
    """online / offline / closed / unknown for one center's newest arrival at reference
    time ``now``: offline when the silence holds more than ``stale_after`` of opening hours."""
    if last is None:
        return "unknown"
    if opening_minutes(last, now, opening) > stale_after.total_seconds() / 60:
        return "offline"
    if now - last <= stale_after or opening[0] <= now.hour < opening[1]:
        return "online"
    return "closed"


def last_arrivals(wh: Warehouse, tenants: Iterable[str] = ()) -> dict[str, datetime | None]:
    """Newest ``updated_at`` per center over the activity tables in ODS: every center with
    rows, plus ``tenants`` (None when they have none)."""
    out: dict[str, datetime | None] = {t: None for t in tenants}
    for table in ACTIVITY_TABLES:
        df = wh.query_df(f"SELECT org_code, max(updated_at) AS m FROM ods_{table} "
                         "GROUP BY org_code")
        for code, m in zip(df["org_code"], df["m"], strict=True):
            if pd.notna(m):
                m = pd.Timestamp(m).to_pydatetime()
                prev = out.get(str(code))
                out[str(code)] = m if prev is None else max(prev, m)
    return out


def reference_time(arrivals: dict[str, datetime | None], clock: str = "source",
                   now: datetime | None = None) -> datetime | None:
    """``now`` if given; else the wall clock or the source's clock (newest arrival)."""
    if now is not None:
        return now
    if clock not in CLOCKS:
        raise ValueError(f"unknown status clock {clock!r}: use one of {CLOCKS}")
    if clock == "wall":
        return datetime.now()
    seen = [m for m in arrivals.values() if m is not None]
    return max(seen) if seen else None


def _ensure_table(wh: Warehouse) -> None:
    wh.execute(DDL)
    cols = set(wh.query_df("SELECT * FROM center_status WHERE 1 = 0").columns)
    if cols != set(COLUMNS):  # a derived table from an older layout: rebuild it
        wh.execute("DROP TABLE center_status")
        wh.execute(DDL)


def refresh_center_status(wh: Warehouse, tenants: Iterable[str] = (),
                          now: datetime | None = None, *, clock: str = "source",
                          **kw) -> list[CenterStatus]:
    """Compute and store the status of every center with rows in ODS (and of ``tenants``);
    replaces their previous rows."""
    arrivals = last_arrivals(wh, list(tenants))
    ref = reference_time(arrivals, clock, now)
    checked = datetime.now()
    used = "fixed" if now is not None else clock
    opening = kw.get("opening", (8, 17))
    _ensure_table(wh)
    out = []
    for tenant, last in sorted(arrivals.items()):
        if last is None or ref is None:
            out.append(CenterStatus(tenant, "unknown", last, None, None, ref, used, checked))
            continue
        silent = max(0.0, (ref - last).total_seconds() / 60)
        out.append(CenterStatus(tenant, classify(last, ref, **kw), last, silent,
                                opening_minutes(last, ref, opening), ref, used, checked))
    with wh.transaction():
        for s in out:
            wh.execute("DELETE FROM center_status WHERE tenant = :t", {"t": s.tenant})
            wh.execute(f"INSERT INTO center_status ({', '.join(COLUMNS)}) VALUES "
                       f"({', '.join(':' + c for c in COLUMNS)})", s.as_dict())
    return out
