"""``simulate`` and ``append_activity``: generate center by center, window by window, and load.

Arrival order and row versions. Every row gets ``updated_at`` = when it is committed (business
time + latency; the later cancellation/refund time for rows updated afterwards; after the window
end for rows a center created while offline). ``row_version`` is derived from ``updated_at``:
``(microseconds since 2000-01-01) * 4096 + slot * 2 + parity`` where ``slot`` is the center's
index and ``parity`` the generation window's parity, after nudging the center's arrivals to
distinct microseconds. So it is one database-wide, unique bigint, strictly increasing with
``updated_at`` across all tables (ties broken by center), like SQL Server ``rowversion`` (not
dense). Business content never depends on the offline windows: with the same seed, runs with and
without an offline window differ only in ``updated_at`` and ``row_version``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import bindparam, func, select, update
from tqdm import tqdm

from hisx.simulator import dictionaries as d
from hisx.simulator import schema
from hisx.simulator.activity import (
    HOUR,
    MIN,
    US,
    CenterState,
    Ids,
    _lat,
    _prefixed,
    gen_activity,
    initial_contracts,
)
from hisx.simulator.centers import Center, build_centers, make_staff, resolve_center, static_frames
from hisx.simulator.load import Sink
from hisx.simulator.manifest import Manifest
from hisx.simulator.population import TEST_NAMES, make_patients, sample_ages

EPOCH = np.datetime64("2000-01-01T00:00:00", "us")
RV_SLOTS = 4096
#: Order frames are written in (parents first).
ORDER = [t.name for t in schema.TABLES]


@dataclass(frozen=True)
class OfflineWindow:
    """A center cut off from the data center for ``hours`` from ``start``."""

    org_code: str
    start: datetime
    hours: float

    @property
    def end(self) -> datetime:
        return self.start + timedelta(hours=self.hours)

    @classmethod
    def parse(cls, text: str) -> OfflineWindow:
        """``CENTER:YYYY-MM-DDTHH:MM:HOURS``; CENTER is an org_code or a pilot short name."""
        try:
            left, hours = text.rsplit(":", 1)
            center, start = left.split(":", 1)
            return cls(center, datetime.fromisoformat(start), float(hours))
        except ValueError as exc:
            raise ValueError(f"bad offline window {text!r}: expected "
                             f"CENTER:YYYY-MM-DDTHH:MM:HOURS, e.g. gaohang:2026-08-12T08:00:24"
                             ) from exc


def _windows_for(c: Center, offline: Sequence[OfflineWindow], centers: list[Center]):
    out = []
    for w in offline:
        if resolve_center(w.org_code, centers) is c:
            s = np.datetime64(w.start, "us")
            out.append((s, s + np.timedelta64(int(w.hours * HOUR), "us")))
    return out


def _finalize(frames: dict[str, pd.DataFrame], slot: int, parity: int, windows,
              floor: np.datetime64 | None, delayed: dict) -> None:
    """Turn ``_arrival`` into ``updated_at`` and ``row_version`` (offline delay, uniqueness)."""
    names = [n for n in frames if len(frames[n])]
    arrs = [frames[n]["_arrival"].to_numpy().astype(US) for n in names]
    sizes = [len(a) for a in arrs]
    if not sizes:
        return
    t = np.concatenate(arrs)
    tab = np.repeat(np.arange(len(names)), sizes)
    for ws, we in windows:
        m = (t >= ws) & (t < we)
        if m.any():
            t[m] = we + np.timedelta64(30, "s") + (t[m] - ws) // 20
            for i, k in zip(*np.unique(tab[m], return_counts=True), strict=True):
                delayed[names[i]] = delayed.get(names[i], 0) + int(k)
    if floor is not None:
        t = np.maximum(t, floor + np.timedelta64(1, "ms"))
    o = np.argsort(t, kind="stable")
    ts = t[o].astype(np.int64)
    ar = np.arange(len(ts), dtype=np.int64)
    ts = np.maximum.accumulate(ts - ar) + ar
    t[o] = ts.astype(US)
    rv = (t - EPOCH).astype(np.int64) * RV_SLOTS + slot * 2 + parity
    pos = 0
    for n, k in zip(names, sizes, strict=True):
        f = frames[n]
        f["updated_at"] = t[pos:pos + k]
        f["row_version"] = rv[pos:pos + k]
        pos += k
        del f["_arrival"]


class _Run:
    """Accumulates counts, defects and ranges over the chunks of one run."""

    def __init__(self, manifest: Manifest):
        self.m = manifest
        self.counts = defaultdict(lambda: defaultdict(int))
        self.rv = [None, None]
        self.ua = [None, None]

    def chunk(self, sink: Sink, c: Center, frames: dict, defects: list) -> int:
        reg = frames.get("registrations")
        if reg is not None and len(reg):
            ua = dict(zip(reg.reg_id.to_numpy().tolist(), reg.updated_at.to_numpy(), strict=True))
            rt = dict(zip(reg.reg_id.to_numpy().tolist(), reg.reg_time.to_numpy(), strict=True))
        n = 0
        for name in ORDER:
            f = frames.get(name)
            if f is None or not len(f):
                continue
            n += sink.write(name, f)
            self.counts[name][c.org_code] += len(f)
            lo, hi = int(f.row_version.min()), int(f.row_version.max())
            self.rv = [lo if self.rv[0] is None else min(lo, self.rv[0]),
                       hi if self.rv[1] is None else max(hi, self.rv[1])]
            tlo, thi = f.updated_at.min(), f.updated_at.max()
            self.ua = [tlo if self.ua[0] is None else min(tlo, self.ua[0]),
                       thi if self.ua[1] is None else max(thi, self.ua[1])]
        for kind, table, pk, org, detail in defects:
            if kind == "future_time" and not rt[pk] > ua[pk]:
                continue  # an offline delay made the arrival later than the skewed time
            self.m.defects.setdefault(kind, []).append(
                {"table": table, "pk": int(pk), "org_code": org, "detail": detail})
        return n

    def close(self) -> Manifest:
        self.m.counts = {t: dict(v) for t, v in self.counts.items()}
        self.m.row_version = {"min": self.rv[0], "max": self.rv[1]}
        self.m.updated_at = {k: (None if v is None else str(pd.Timestamp(v)))
                             for k, v in zip(("min", "max"), self.ua, strict=True)}
        return self.m


def _month_bounds(start: date, months: int) -> list[np.datetime64]:
    first = np.datetime64(start, "M")
    bounds = [np.datetime64(start, "us")]
    bounds += [(first + k).astype("datetime64[D]").astype(US) for k in range(1, months + 1)]
    return bounds


def _center_setup(c: Center, seed: int, start: date, visits_per_month: int, ids: Ids,
                  defect_rate: float, defects: list) -> tuple[CenterState, dict]:
    c.staff = make_staff(c, seed)
    rng = np.random.default_rng([seed, c.slot, 1])
    t_start = np.datetime64(start, "us")
    n_pop = max(200, int(visits_per_month * rng.uniform(0.95, 1.3)))
    first = np.datetime64("2012-01-01T00:00:00", "us")
    span = (t_start - first).astype(np.int64)
    created = np.sort(first + rng.integers(0, span, n_pop).astype("timedelta64[us]"))
    pat, pop = make_patients(c, rng, ids.take("patients", n_pop), created, defect_rate, defects,
                             age=sample_ages(rng, n_pop), ref=t_start)
    pop["contract_end"] = np.datetime64("NaT", "D")
    created = pat.created_at.to_numpy()
    touched = rng.random(n_pop) < 0.1
    later = created + ((t_start - created).astype(np.int64) * rng.random(n_pop)).astype(
        np.int64).astype("timedelta64[us]")
    pat["_arrival"] = np.where(touched, later, created + _lat(rng, n_pop))
    st = CenterState(pop=pop)
    frames = static_frames(c, ids, np.datetime64("2011-06-01T09:00", "us")
                           + np.timedelta64(c.slot, "h"))
    frames["patients"] = pat
    frames["family_contracts"] = initial_contracts(c, st, t_start, rng, ids)
    return st, frames


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = pd.concat([out[k], v], ignore_index=True) if k in out else v
    return out


def simulate(url: str, *, centers: int = 3, months: int = 3, start: date = date(2026, 8, 1),
             seed: int = 42, defect_rate: float = 0.03, visits_per_month: int = 18000,
             offline: Sequence[OfflineWindow] = (), progress: bool = True) -> Manifest:
    """Create the source schema at ``url`` (drop + create) and fill it; return the manifest."""
    t_begin = time.perf_counter()
    cs = build_centers(centers)
    for w in offline:
        resolve_center(w.org_code, cs)
    m = Manifest(kind="simulate", seed=seed, params={
        "centers": centers, "months": months, "start": str(start),
        "defect_rate": defect_rate, "visits_per_month": visits_per_month})
    run = _Run(m)
    sink = Sink(url)
    sink.create_schema()
    ids = Ids()
    bounds = _month_bounds(start, months)
    delayed: dict[str, dict[str, int]] = defaultdict(dict)
    bar = tqdm(total=centers * months, disable=not progress, desc="simulate", unit="chunk")
    try:
        for c in cs:
            windows = _windows_for(c, offline, cs)
            defects: list = []
            st, setup = _center_setup(c, seed, start, visits_per_month, ids, defect_rate, defects)
            for k in range(months):
                rng = np.random.default_rng([seed, c.slot, 100 + k])
                frames = gen_activity(c, st, bounds[k], bounds[k + 1], rng, ids, defect_rate,
                                      visits_per_month, defects)
                if k == 0:
                    frames = _merge(setup, frames)
                _finalize(frames, c.slot, k % 2, windows, None, delayed[c.org_code])
                rows = run.chunk(sink, c, frames, defects)
                defects = []
                bar.update(1)
                bar.set_postfix(center=c.short, rows=rows)
            m.centers.append({"org_code": c.org_code, "org_name": c.org_name, "short": c.short,
                              "his_vendor": c.vendor, "slot": c.slot})
        sink.create_indexes()
    finally:
        bar.close()
        sink.close()
    for w in offline:
        c = resolve_center(w.org_code, cs)
        m.offline.append({"org_code": c.org_code, "start": w.start.isoformat(),
                          "hours": w.hours, "end": w.end.isoformat(),
                          "delayed": dict(delayed[c.org_code])})
    m.elapsed_s = round(time.perf_counter() - t_begin, 3)
    return run.close()


# ---------------------------------------------------------------------------------------------
# append_activity


def _read_state(conn, c: Center, vendor: str, t0: np.datetime64) -> CenterState:
    p = schema.patients
    rows = conn.execute(select(p.c.patient_id, p.c.name, p.c.birth_date, p.c.gender,
                               p.c.insurance_type, p.c.created_at)
                        .where(p.c.org_code == c.org_code)).all()
    pat = pd.DataFrame(rows, columns=["patient_id", "name", "birth", "gender", "ins", "created"])
    f = schema.chronic_followups
    chron = pd.DataFrame(conn.execute(select(f.c.patient_id, f.c.disease).distinct()
                                      .where(f.c.org_code == c.org_code)).all(),
                         columns=["patient_id", "disease"])
    dis = d.CODESETS["disease"][vendor]
    chron["disease"] = chron.disease.map(dis)
    fc = schema.family_contracts
    con = pd.DataFrame(conn.execute(select(fc.c.patient_id, func.max(fc.c.end_date))
                                    .where(fc.c.org_code == c.org_code)
                                    .group_by(fc.c.patient_id)).all(),
                       columns=["patient_id", "end"])
    birth = pd.to_datetime(pat.birth).to_numpy().astype("datetime64[D]")
    ins = pat.ins.map(d.CODESETS["insurance_type"][vendor]).fillna("uninsured").to_numpy()
    pop = pd.DataFrame({
        "patient_id": pat.patient_id.to_numpy(np.int64),
        "age": (np.datetime64(t0, "D") - birth).astype(np.int64) / 365.25,
        "male": pat.gender.str.strip().map(d.CODESETS["gender"][vendor]).eq("male").to_numpy(),
        "ins": ins,
        "htn": pat.patient_id.isin(chron.patient_id[chron.disease == "hypertension"]).to_numpy(),
        "dm": pat.patient_id.isin(chron.patient_id[chron.disease == "diabetes"]).to_numpy(),
        "eligible": ~pat.name.str.strip().isin(TEST_NAMES).to_numpy(),
        "created": pd.to_datetime(pat.created).to_numpy().astype(US),
    })
    ends = pd.Series(pd.to_datetime(con.end).to_numpy(), index=con.patient_id.to_numpy(np.int64))
    pop["contract_end"] = ends.reindex(pop.patient_id.to_numpy()).to_numpy().astype("datetime64[D]")
    r = schema.registrations
    n_reg = conn.execute(select(func.count()).select_from(r).where(r.c.org_code == c.org_code)).scalar()
    return CenterState(pop=pop, visit_counter=int(n_reg))


def _read_staff(conn, c: Center) -> pd.DataFrame:
    s = schema.staff
    st = pd.DataFrame(conn.execute(select(s.c.staff_code, s.c.role, s.c.dept_code, s.c.team_code,
                                          s.c.staff_name).where(s.c.org_code == c.org_code)
                                   .order_by(s.c.staff_id)).all(),
                      columns=["staff_code", "role", "dept", "team_code", "staff_name"])
    st["role"] = st.role.map(d.CODESETS["staff_role"][c.vendor])
    st["dept"] = st.dept.map(d.dept_code_map(c.vendor))
    return st


def _cancellations(conn, c: Center, t0, t1, rng, ids: Ids) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Recent registrations cancelled during the window (updates) and their fee refunds."""
    r, ch = schema.registrations, schema.charges
    normal = d.local_code(c.vendor, "reg_status", "normal")
    fee = d.local_code(c.vendor, "fee_category", "registration")
    since = pd.Timestamp(t0) - pd.Timedelta(days=7)
    rows = pd.DataFrame(conn.execute(
        select(r.c.reg_id, ch.c.charge_id, ch.c.amount, ch.c.insurance_amount, ch.c.self_amount,
               ch.c.pay_method)
        .join(ch, (ch.c.reg_id == r.c.reg_id) & (ch.c.fee_category == fee)
              & ch.c.refund_of.is_(None))
        .where(r.c.org_code == c.org_code, r.c.status == normal, r.c.reg_time >= since.to_pydatetime())
        .order_by(r.c.reg_id)).all(),
        columns=["reg_id", "charge_id", "amount", "ins", "self", "pay"])
    rows = rows.drop_duplicates("reg_id")
    pick = rows[rng.random(len(rows)) < 0.02].reset_index(drop=True)
    n = len(pick)
    span = max(int((t1 - t0).astype(np.int64)), 1)
    when = t0 + np.sort(rng.integers(0, span, n)).astype("timedelta64[us]")
    upd = pd.DataFrame({"reg_id": pick.reg_id.to_numpy(np.int64),
                        "status": d.local_code(c.vendor, "reg_status", "cancelled"),
                        "_arrival": when + _lat(rng, n)})
    rid = ids.take("charges", n)
    amt = pick.amount.astype(float).to_numpy()
    ref = pd.DataFrame({
        "charge_id": rid, "org_code": c.org_code,
        "charge_no": _prefixed(c.vendor, "refund", when, rid), "reg_id": pick.reg_id.to_numpy(np.int64),
        "rx_id": pd.array([None] * n, dtype="Int64"), "fee_category": fee, "amount": -amt,
        "pay_method": pick.pay.to_numpy(dtype=object),
        "insurance_amount": -pick.ins.astype(float).to_numpy(),
        "self_amount": -pick.self.astype(float).to_numpy(), "charge_time": when,
        "refund_of": pd.array(pick.charge_id.to_numpy(np.int64), dtype="Int64"),
        "_arrival": when + _lat(rng, n),
    })
    return upd, ref


def append_activity(url: str, *, start: datetime, hours: float, seed: int, centers: int = 3,
                    visits_per_month: int = 18000, defect_rate: float = 0.03,
                    progress: bool = False) -> Manifest:
    """Add the activity of ``[start, start + hours)`` to an existing source.

    New rows (patients, visits, ...) get new keys and higher row versions; about 2% of the
    registrations of the week before ``start`` are cancelled during the window (an update:
    new status, updated_at and row_version) with a refund charge. Arrivals never precede the
    newest ``updated_at`` already in the database, so every written row version is higher.
    """
    t_begin = time.perf_counter()
    m = Manifest(kind="append", seed=seed, params={
        "start": start.isoformat(), "hours": hours, "centers": centers,
        "defect_rate": defect_rate, "visits_per_month": visits_per_month})
    run = _Run(m)
    sink = Sink(url)
    t0 = np.datetime64(start, "us")
    t1 = t0 + np.timedelta64(int(hours * HOUR), "us")
    ids = Ids()
    updated = defaultdict(dict)
    try:
        with sink.engine.connect() as conn:
            orgs = conn.execute(select(schema.organizations.c.org_code, schema.organizations.c.org_id)
                                .order_by(schema.organizations.c.org_id)).all()[:centers]
            for t in schema.TABLES:
                pk = t.c[schema.primary_key(t)]
                ids.next[t.name] = int(conn.execute(select(func.max(pk))).scalar() or 0) + 1
            floor = max(pd.Timestamp(conn.execute(select(func.max(t.c.updated_at))).scalar()
                                     or "2000-01-01") for t in schema.TABLES)
            floor = np.datetime64(floor.to_datetime64(), "us")
            all_centers = build_centers(max(o[1] for o in orgs))
            work = []
            for code, org_id in orgs:
                c = all_centers[org_id - 1]
                assert c.org_code == code, (c.org_code, code)
                c.staff = _read_staff(conn, c)
                work.append((c, _read_state(conn, c, c.vendor, t0),
                             _cancellations(conn, c, t0, t1,
                                            np.random.default_rng([seed, c.slot, 8888]), ids)))
        for c, st, (upd, ref) in tqdm(work, disable=not progress, desc="append"):
            defects: list = []
            rng = np.random.default_rng([seed, c.slot, 7777])
            frames = gen_activity(c, st, t0, t1, rng, ids, defect_rate, visits_per_month, defects)
            frames = _merge(frames, {"charges": ref, "_upd_registrations": upd})
            _finalize(frames, c.slot, 0, [], floor, {})
            upd = frames.pop("_upd_registrations")
            run.chunk(sink, c, frames, defects)
            sink.flush()
            if len(upd):
                r = schema.registrations
                vals = {"status": bindparam("b_status"), "updated_at": bindparam("b_updated_at")}
                if sink.dialect != "mssql":
                    vals["row_version"] = bindparam("b_row_version")
                stmt = update(r).where(r.c.reg_id == bindparam("b_reg_id")).values(**vals)
                params = [{"b_reg_id": int(a), "b_status": s, "b_updated_at": pd.Timestamp(u).to_pydatetime(),
                           "b_row_version": int(v)}
                          for a, s, u, v in zip(upd.reg_id, upd.status, upd.updated_at,
                                                upd.row_version, strict=True)]
                with sink.engine.begin() as conn:
                    conn.execute(stmt, params)
                updated["registrations"][c.org_code] = len(upd)
                run.rv[1] = max(run.rv[1] or 0, int(upd.row_version.max()))
            m.centers.append({"org_code": c.org_code, "org_name": c.org_name, "short": c.short,
                              "his_vendor": c.vendor, "slot": c.slot})
    finally:
        sink.close()
    m.updated = {k: dict(v) for k, v in updated.items()}
    m.elapsed_s = round(time.perf_counter() - t_begin, 3)
    return run.close()


# ---------------------------------------------------------------------------------------------
# CLI helpers


def add_simulate_arguments(parser) -> None:
    """Add the ``hisx simulate`` options to an argparse parser."""
    parser.add_argument("--url", required=True, help="SQLAlchemy URL, e.g. sqlite:///.hisx/source.db")
    parser.add_argument("--centers", type=int, default=3)
    parser.add_argument("--months", type=int, default=3)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2026, 8, 1))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--defect-rate", type=float, default=0.03)
    parser.add_argument("--visits-per-month", type=int, default=18000)
    parser.add_argument("--offline", type=OfflineWindow.parse, action="append", default=[],
                        metavar="CENTER:YYYY-MM-DDTHH:MM:HOURS")
    parser.add_argument("--manifest", default=None,
                        help="manifest path (default: next to a SQLite file)")
    parser.add_argument("--no-progress", action="store_true")


def default_manifest_path(url: str) -> Path | None:
    """``<file>.manifest.json`` next to a SQLite database file; None for other URLs."""
    if url.startswith("sqlite") and ":///" in url:
        path = url.split(":///", 1)[1]
        if path and path != ":memory:":
            return Path(path).with_suffix(".manifest.json")
    return None


def cli_simulate(args) -> Manifest:
    """Run ``simulate`` from parsed ``hisx simulate`` arguments and write the manifest."""
    url = args.url
    if url.startswith("sqlite:///"):
        Path(url.split(":///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    m = simulate(url, centers=args.centers, months=args.months, start=args.start, seed=args.seed,
                 defect_rate=args.defect_rate, visits_per_month=args.visits_per_month,
                 offline=args.offline, progress=not args.no_progress)
    path = args.manifest or default_manifest_path(url)
    if path:
        m.to_json(path)
    return m


def summary(m: Manifest) -> str:
    """One line per table: rows, and the defect counts."""
    lines = [f"{t}: {sum(v.values())}" for t, v in m.counts.items()]
    lines.append("defects: " + ", ".join(f"{k}={len(v)}" for k, v in m.defects.items()))
    rate = m.total_rows / m.elapsed_s if m.elapsed_s else 0
    lines.append(f"{m.total_rows} rows in {m.elapsed_s:.1f} s ({rate:,.0f} rows/s)")
    return "\n".join(lines)


__all__ = ["OfflineWindow", "simulate", "append_activity", "Manifest", "add_simulate_arguments",
           "cli_simulate", "default_manifest_path", "summary", "MIN"]
