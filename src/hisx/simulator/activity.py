"""Outpatient activity of one center over a time window, vectorized with numpy/pandas.

Visits (registrations) drive everything: diagnoses follow the visit reason, prescriptions follow
the diagnoses, charges add up the prescription and service amounts, dispensing follows payment.
Chronic patients (hypertension, diabetes) come back about monthly for refills and get follow-up
records about quarterly. Every produced row carries ``_arrival``: when it would be committed
in the database (business time + latency, or the later cancellation/refund time).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hisx.simulator import dictionaries as d
from hisx.simulator.centers import Center
from hisx.simulator.identifiers import fullwidth, unit_hash
from hisx.simulator.population import make_patients

US = "datetime64[us]"
SEC = 1_000_000  # microseconds
MIN = 60 * SEC
HOUR = 60 * MIN
DAY = 24 * HOUR
SEASON = np.array([1.12, 0.85, 1.02, 0.98, 0.96, 0.95, 0.93, 0.94, 0.99, 0.93, 1.04, 1.12])
MEAN_DAY_WEIGHT = (5 + 0.5 + 0.25) / 7
EMERGENCY_HOURS = np.array([1, 1, 1, 1, 1, 1, 1, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 5, 7, 8, 8, 6, 4, 2],
                           dtype=float)

# reason for an ordinary visit: code, weight, {dept: w}, ((drug, p), ...)
ACUTE = (
    ("J06.900", 20, {"general_practice": .75, "internal_medicine": .2, "tcm": .05},
     (("cold_compound", .6), ("lianhua_qingwen", .35), ("amoxicillin", .2), ("cefaclor", .12),
      ("banlangen", .15))),
    ("J00.x00", 5, {"general_practice": .8, "tcm": .2}, (("cold_compound", .6), ("banlangen", .4))),
    ("J20.900", 6, {"general_practice": .6, "internal_medicine": .4},
     (("ambroxol", .6), ("amoxicillin", .35), ("cefaclor", .25), ("azithromycin", .2),
      ("jizhi_syrup", .4))),
    ("J18.900", 1, {"internal_medicine": 1}, (("levofloxacin", .6), ("cefaclor", .4), ("ambroxol", .6))),
    ("K29.500", 5, {"internal_medicine": .5, "general_practice": .35, "tcm": .15},
     (("omeprazole", .8), ("hydrotalcite", .4), ("xiaoyao_pills", .1))),
    ("K30.x00", 3, {"general_practice": .6, "tcm": .4}, (("domperidone", .7), ("xiaoyao_pills", .3))),
    ("M54.500", 6, {"rehabilitation": .45, "tcm": .35, "general_practice": .2},
     (("shangshi_plaster", .45), ("ibuprofen", .4), ("diclofenac", .25))),
    ("E78.500", 4, {"general_practice": .6, "internal_medicine": .4},
     (("atorvastatin", .7), ("rosuvastatin", .3))),
    ("I25.100", 4, {"internal_medicine": .6, "general_practice": .4},
     (("aspirin", .8), ("atorvastatin", .6), ("isosorbide_mn", .4), ("danshen_pills", .3),
      ("tongxinluo", .2), ("nitroglycerin", .1))),
    ("I63.900", 3, {"internal_medicine": .6, "general_practice": .3, "rehabilitation": .1},
     (("aspirin", .6), ("atorvastatin", .7), ("clopidogrel", .35))),
    ("G47.000", 3, {"general_practice": .5, "tcm": .5},
     (("estazolam", .6), ("yangxue_qingnao", .3), ("xiaoyao_pills", .2))),
    ("R51.x00", 2, {"general_practice": 1}, (("ibuprofen", .7), ("yangxue_qingnao", .3))),
    ("J44.900", 2, {"internal_medicine": .7, "general_practice": .3}, (("salbutamol", .8), ("ambroxol", .4))),
    ("N39.000", 2, {"general_practice": .6, "internal_medicine": .4}, (("levofloxacin", .9),)),
    ("Z00.000", 8, {"preventive_care": 1}, ()),
    ("K02.900", 5, {"stomatology": 1}, (("metronidazole", .3), ("ibuprofen", .2))),
    ("N76.000", 2, {"gynecology": 1}, (("metronidazole", .8),)),
    ("H10.900", 2, {"ophthalmology": 1}, (("levofloxacin_eye", .9),)),
    ("S61.900", 2, {"surgery": 1}, (("cefaclor", .4),)),
    ("T78.400", 1, {"general_practice": 1}, (("loratadine", .9),)),
)
EMERGENCY = (
    ("R50.900", 4, {"emergency": 1}, (("ibuprofen", .6), ("lianhua_qingwen", .3))),
    ("J06.900", 3, {"emergency": 1}, (("cold_compound", .6), ("amoxicillin", .3))),
    ("R10.400", 3, {"emergency": 1}, (("omeprazole", .5), ("domperidone", .3))),
    ("S61.900", 2, {"emergency": 1}, (("cefaclor", .5),)),
    ("I10.x00", 1, {"emergency": 1}, (("nitroglycerin", .5), ("amlodipine", .6))),
)
#: (probability, amount choices) of examination / treatment fees per primary diagnosis.
EXAMS = {"Z00.000": (1.0, (45, 80, 120, 160)), "J20.900": (.4, (60,)), "J18.900": (.9, (60, 85)),
         "I25.100": (.6, (25,)), "I63.900": (.3, (25,)), "K29.500": (.1, (120,)),
         "R10.400": (.6, (30, 80)), "R50.900": (.7, (20,)), "E11.900": (.45, (10,)),
         "E14.900x001": (.45, (10,)), "I10.x00x002": (.1, (25,))}
TREATS = {"M54.500": (.6, (35, 48, 60, 90)), "K02.900": (1.0, (30, 60, 120, 260)),
          "S61.900": (1.0, (25, 40, 65)), "N76.000": (.3, (20, 35)), "H10.900": (.1, (15,))}
HTN_DRUGS = ("amlodipine", "nifedipine_cr", "valsartan", "irbesartan", "metoprolol", "hctz")
PAY = {"urban_employee": ("urban_employee_insurance", .85),
       "urban_resident": ("urban_resident_insurance", .70), "public_funded": ("public_funded", 1.0),
       "commercial": ("self_pay", 0.0), "uninsured": ("self_pay", 0.0)}
#: Share of registration defects per kind (of defect_rate).
REG_DEFECTS = (("unmapped_dept", .25), ("future_time", .2), ("duplicate_row", .2),
               ("whitespace", .2), ("fullwidth_digits", .15))
ITEM_DEFECT_SHARE = 0.5
FOLLOWUP_DEFECT_SHARE = 0.5


@dataclass
class Ids:
    """Global surrogate-key counters per table (deterministic in generation order)."""

    next: dict[str, int] = field(default_factory=dict)

    def take(self, table: str, n: int) -> np.ndarray:
        start = self.next.get(table, 1)
        self.next[table] = start + n
        return np.arange(start, start + n, dtype=np.int64)


@dataclass
class CenterState:
    """What one center's activity needs to remember between windows."""

    pop: pd.DataFrame  # patient_id, age, male, ins, htn, dm, eligible, created, contract_end
    visit_counter: int = 0


def _lat(rng, n) -> np.ndarray:
    return rng.integers(50_000, 2_500_000, n).astype("timedelta64[us]")


def _choice_weights(rng, n, table) -> np.ndarray:
    w = np.array([t[1] for t in table], dtype=float)
    return rng.choice(len(table), n, p=w / w.sum())


def _by_group(rng, groups: np.ndarray, options: dict[int, tuple[list, np.ndarray]]) -> np.ndarray:
    """Per element pick one of options[group] = (values, weights)."""
    out = np.empty(len(groups), dtype=object)
    for g, (vals, w) in options.items():
        idx = np.flatnonzero(groups == g)
        if len(idx):
            out[idx] = np.asarray(vals, dtype=object)[rng.choice(len(vals), len(idx), p=w / w.sum())]
    return out


def _team_doctor(c: Center, pid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    leaders = c.staff[(c.staff.role == "doctor") & c.staff.team_code.notna()]
    k = (unit_hash(pid, 51) * len(leaders)).astype(int)
    return (leaders.team_code.to_numpy()[k].astype(object),
            leaders.staff_code.to_numpy()[k].astype(object))


def _doctors(c: Center, rng, dept: np.ndarray) -> np.ndarray:
    docs = c.staff[c.staff.role == "doctor"]
    out = np.empty(len(dept), dtype=object)
    for dep, grp in docs.groupby("dept"):
        idx = np.flatnonzero(dept == dep)
        if len(idx):
            out[idx] = grp.staff_code.to_numpy()[rng.integers(0, len(grp), len(idx))]
    return out


def _day_grid(t0: np.datetime64, t1: np.datetime64):
    days = np.arange(t0.astype("datetime64[D]"),
                     (t1 - np.timedelta64(1, "us")).astype("datetime64[D]") + 1)
    dow = (days.astype(np.int64) + 3) % 7  # Monday = 0
    month = days.astype("datetime64[M]").astype(np.int64) % 12
    dom = (days - days.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) + 1
    w = np.select([dow == 5, dow == 6], [0.5, 0.25], 1.0) * SEASON[month]
    w = np.where(((month == 9) & (dom <= 7)) | ((month == 0) & (dom == 1)), 0.3, w)
    return days, dow, w


def gen_activity(c: Center, st: CenterState, t0: np.datetime64, t1: np.datetime64,
                 rng: np.random.Generator, ids: Ids, defect_rate: float,
                 visits_per_month: int, defects: list) -> dict[str, pd.DataFrame]:
    """All rows one center creates in [t0, t1)."""
    t0, t1 = np.datetime64(t0, "us"), np.datetime64(t1, "us")
    days, dow, w = _day_grid(t0, t1)
    base = visits_per_month / (30.44 * MEAN_DAY_WEIGHT)
    n_total = int(rng.poisson(base * w.sum() * (1 + rng.normal(0, 0.02))))
    pop = st.pop
    existing = (pop.created.to_numpy() < t0) & pop.eligible.to_numpy()
    chronic = existing & (pop.htn.to_numpy() | pop.dm.to_numpy())
    p_chronic = min(1.0, 0.9 * len(days) / 30.44)
    ch_pids = pop.patient_id.to_numpy()[chronic & (rng.random(len(pop)) < p_chronic)]
    ch_pids = rng.permutation(ch_pids)[: int(0.45 * n_total)]
    n_c = len(ch_pids)
    n_a = max(n_total - n_c, 0)
    n = n_c + n_a
    is_chronic = np.arange(n) < n_c
    day = rng.choice(len(days), n, p=w / w.sum())
    emergency = ~is_chronic & (rng.random(n) < 0.025)
    weekend = dow[day] >= 5
    morning = rng.random(n) < np.where(weekend, 1.0, 0.62)
    sec = np.where(morning, 8 * 3600 + rng.random(n) * 3.5 * 3600,
                   13 * 3600 + rng.random(n) * 3.5 * 3600)
    em_sec = rng.choice(24, n, p=EMERGENCY_HOURS / EMERGENCY_HOURS.sum()) * 3600 + rng.random(n) * 3600
    sec = np.where(emergency, em_sec, sec)
    reg_time = days[day].astype(US) + (sec * SEC).astype(np.int64).astype("timedelta64[us]")
    # patients
    pids = np.zeros(n, dtype=np.int64)
    pids[:n_c] = ch_pids
    new = ~is_chronic & ~emergency & (rng.random(n) < 0.05)
    old_acute = ~is_chronic & ~new
    ex_idx = np.flatnonzero(existing)
    if len(ex_idx):
        age_w = 0.4 + pop.age.to_numpy()[ex_idx] / 50
        pids[old_acute] = pop.patient_id.to_numpy()[
            ex_idx[rng.choice(len(ex_idx), old_acute.sum(), p=age_w / age_w.sum())]]
    else:
        new |= old_acute
    n_new = int(new.sum())
    frames: dict[str, pd.DataFrame] = {}
    if n_new:
        created = reg_time[new] - rng.integers(3 * MIN, 15 * MIN, n_new).astype("timedelta64[us]")
        new_ids = ids.take("patients", n_new)
        pat, newpop = make_patients(c, rng, new_ids, created, defect_rate, defects)
        newpop["contract_end"] = np.datetime64("NaT", "D")
        pids[new] = new_ids
        pat["_arrival"] = pat.created_at.to_numpy() + _lat(rng, n_new)
        frames["patients"] = pat
        st.pop = pop = pd.concat([pop, newpop], ignore_index=True)
    # keep the window; drop visits of test patients
    popi = pop.set_index("patient_id")
    keep = (reg_time >= t0) & (reg_time < t1) & popi.eligible.reindex(pids).fillna(False).to_numpy(bool)
    order = np.argsort(reg_time[keep], kind="stable")
    sel = np.flatnonzero(keep)[order]
    v = pd.DataFrame({"patient_id": pids[sel], "reg_time": reg_time[sel],
                      "chronic": is_chronic[sel], "emergency": emergency[sel], "new": new[sel]})
    pinfo = popi.loc[v.patient_id.to_numpy()]
    v["htn"] = pinfo.htn.to_numpy()
    v["dm"] = pinfo.dm.to_numpy()
    v["ins"] = pinfo.ins.to_numpy()
    frames.update(_visits(c, st, v, rng, ids, defect_rate, defects))
    frames.update(_followups(c, pop, days, dow, t0, t1, rng, ids, defect_rate, defects))
    frames.update(_contracts(c, st, days, dow, t0, t1, rng, ids))
    return frames


def _visits(c, st, v, rng, ids, defect_rate, defects) -> dict[str, pd.DataFrame]:
    n = len(v)
    pid = v.patient_id.to_numpy()
    chronic, emergency = v.chronic.to_numpy(), v.emergency.to_numpy()
    acute = ~chronic & ~emergency
    reg_time = v.reg_time.to_numpy()
    # reason, department, primary diagnosis
    primary = np.empty(n, dtype=object)
    dept = np.empty(n, dtype=object)
    reason = np.full(n, -1)
    a_idx = np.flatnonzero(acute)
    reason[a_idx] = _choice_weights(rng, len(a_idx), ACUTE)
    e_idx = np.flatnonzero(emergency)
    em_reason = _choice_weights(rng, len(e_idx), EMERGENCY)
    htn_code = np.where(unit_hash(pid, 61) < .7, "I10.x00x002",
                        np.where(unit_hash(pid, 61) < .95, "I10.x00", "I11.900")).astype(object)
    dm_code = np.where(unit_hash(pid, 62) < .82, "E11.900", "E14.900x001").astype(object)
    for i, (code, _w, depts, _drugs) in enumerate(ACUTE):
        idx = a_idx[reason[a_idx] == i]
        primary[idx] = code
        dept[idx] = np.asarray(list(depts), dtype=object)[
            rng.choice(len(depts), len(idx), p=np.array(list(depts.values())) / sum(depts.values()))]
    primary[e_idx] = np.array([EMERGENCY[k][0] for k in em_reason], dtype=object)
    dept[e_idx] = "emergency"
    c_idx = np.flatnonzero(chronic)
    htn, dm = v.htn.to_numpy(), v.dm.to_numpy()
    dm_first = dm & (~htn | (rng.random(n) < 0.35))
    primary[c_idx] = np.where(dm_first[c_idx], dm_code[c_idx], htn_code[c_idx])
    dept[c_idx] = np.where(rng.random(len(c_idx)) < 0.8, "general_practice", "internal_medicine")
    doctor = _doctors(c, rng, dept)
    _team, team_doc = _team_doctor(c, pid)
    fam = chronic & (dept == "general_practice") & (rng.random(n) < 0.7)
    doctor[fam] = team_doc[fam]
    # registration rows
    cancelled = rng.random(n) < 0.02
    kind = np.where(chronic, np.where(rng.random(n) < 0.93, "return", "first"),
                    np.where(v.new.to_numpy() | (rng.random(n) < 0.6), "first", "return"))
    fee = np.where(emergency, 15.0, np.where(dept == "tcm", 14.0, 10.0))
    reg_ids = ids.take("registrations", n)
    counter = st.visit_counter + np.arange(n)
    st.visit_counter += n
    visit_no = _visit_no(c.vendor, reg_time, counter, emergency)
    loc = {f: c.loc(f) for f in ("visit_kind", "visit_type", "reg_status", "rx_type", "route",
                                 "frequency", "fee_category", "pay_method", "dispense_status")}
    dept_local = pd.Series(dept).map(c.dept_codes()).to_numpy(dtype=object)
    cancel_time = reg_time + rng.integers(5 * MIN, 90 * MIN, n).astype("timedelta64[us]")
    reg = pd.DataFrame({
        "reg_id": reg_ids, "org_code": c.org_code, "visit_no": visit_no, "patient_id": pid,
        "dept_code": dept_local, "doctor_code": doctor, "reg_time": reg_time,
        "visit_kind": pd.Series(kind).map(loc["visit_kind"]).to_numpy(dtype=object),
        "visit_type": np.where(emergency, loc["visit_type"]["emergency"],
                               loc["visit_type"]["outpatient"]).astype(object),
        "reg_fee": fee, "status": np.where(cancelled, loc["reg_status"]["cancelled"],
                                           loc["reg_status"]["normal"]).astype(object),
        "is_deleted": np.zeros(n, dtype=np.int64),
    })
    reg["_arrival"] = np.where(cancelled, cancel_time, reg_time) + _lat(rng, n)
    # diagnoses (not for cancelled visits)
    seen = ~cancelled
    diag_time = reg_time + rng.integers(5 * MIN, 35 * MIN, n).astype("timedelta64[us]")
    dv = [np.flatnonzero(seen)]
    dc = [primary[seen]]
    both = seen & chronic & htn & dm
    dv.append(np.flatnonzero(both))
    dc.append(np.where(dm_first[both], htn_code[both], dm_code[both]))
    lip = seen & chronic & (unit_hash(pid, 41) < 0.2)
    dv.append(np.flatnonzero(lip))
    dc.append(np.full(lip.sum(), "E78.500", dtype=object))
    acc = seen & acute & (htn | dm) & (rng.random(n) < 0.3)
    dv.append(np.flatnonzero(acc))
    dc.append(np.where(htn[acc], htn_code[acc], dm_code[acc]))
    dvi = np.concatenate(dv)
    dcode = np.concatenate(dc).astype(object)
    o = np.argsort(dvi, kind="stable")
    dvi, dcode = dvi[o], dcode[o]
    seq = pd.Series(dvi).groupby(dvi).cumcount().to_numpy() + 1
    diag = pd.DataFrame({
        "diag_id": ids.take("diagnoses", len(dvi)), "org_code": c.org_code,
        "reg_id": reg_ids[dvi], "seq_no": seq, "icd_code": dcode,
        "diag_name": pd.Series(dcode).map(d.DIAGNOSES).to_numpy(dtype=object),
        "is_primary": (seq == 1).astype(np.int64), "diag_time": diag_time[dvi],
    })
    diag["_arrival"] = diag.diag_time.to_numpy() + _lat(rng, len(diag))
    frames = {"registrations": reg, "diagnoses": diag}
    frames.update(_prescriptions_and_money(
        c, v, rng, ids, defect_rate, defects, reg_ids, reg_time, diag_time, cancelled,
        cancel_time, chronic, emergency, acute, reason, em_reason, e_idx, primary, dept, doctor,
        fee, loc, pid))
    _registration_defects(c, rng, frames, defect_rate, defects, cancelled, ids)
    return frames


def _visit_no(vendor: str, t: np.ndarray, counter: np.ndarray, emergency: np.ndarray) -> np.ndarray:
    if not len(t):
        return np.empty(0, dtype=object)
    ymd = np.char.replace(np.datetime_as_string(t, unit="D"), "-", "")
    seq6 = np.char.zfill((counter % 1_000_000).astype("U7"), 6)
    if vendor == "vendor_a":
        out = np.char.add(np.char.add(np.where(emergency, "JZ", "MZ"), np.strings.slice(ymd, 2, None)),
                          seq6)
    elif vendor == "vendor_b":
        out = np.char.add(np.char.add(ymd, np.where(emergency, "2", "1")), seq6)
    else:
        out = np.char.add(np.char.add(np.where(emergency, "E", "O"), ymd), seq6)
    return out.astype(object)


def _regimen(pid: np.ndarray, htn: np.ndarray, dm: np.ndarray) -> list[tuple[np.ndarray, str]]:
    """Stable per-patient chronic regimens: (mask over visits, drug key)."""
    out = []
    h1 = (unit_hash(pid, 11) * 6).astype(int)
    h2 = (h1 + 1 + (unit_hash(pid, 13) * 5).astype(int)) % 6
    for k, key in enumerate(HTN_DRUGS):
        out.append((htn & ((h1 == k) | ((unit_hash(pid, 12) < .4) & (h2 == k))), key))
    met = dm & (unit_hash(pid, 21) < .85)
    out.append((met, "metformin"))
    second = dm & (unit_hash(pid, 22) < .4)
    out.append((second & (unit_hash(pid, 24) < .55), "glimepiride"))
    out.append(((second & (unit_hash(pid, 24) >= .55)) | (dm & ~met), "acarbose"))
    ins = dm & (unit_hash(pid, 23) < .12)
    out.append((ins & (unit_hash(pid, 25) < .6), "insulin_glargine"))
    out.append((ins & (unit_hash(pid, 25) >= .6), "insulin_premix"))
    out.append((dm & (unit_hash(pid, 26) < .1), "mecobalamin"))
    out.append((dm & (unit_hash(pid, 27) < .08), "liuwei_dihuang"))
    out.append(((htn | dm) & (unit_hash(pid, 31) < .3), "aspirin"))
    out.append(((htn | dm) & (unit_hash(pid, 32) < .35), "atorvastatin"))
    out.append((htn & (unit_hash(pid, 33) < .06), "danshen_pills"))
    return out


def _prescriptions_and_money(c, v, rng, ids, defect_rate, defects, reg_ids, reg_time, diag_time,
                             cancelled, cancel_time, chronic, emergency, acute, reason,
                             em_reason, e_idx, primary, dept, doctor, fee, loc, pid):
    n = len(v)
    seen = ~cancelled
    htn, dm = v.htn.to_numpy(), v.dm.to_numpy()
    pv, pd_ = [], []
    wants_rx = seen & (rng.random(n) < 0.9)
    for mask, key in _regimen(pid, htn, dm):
        m = mask & chronic & seen
        pv.append(np.flatnonzero(m))
        pd_.append(np.full(m.sum(), d.DRUG_INDEX[key]))
    em_reason_full = np.full(n, -1)
    em_reason_full[e_idx] = em_reason
    for table, rsn, base in ((ACUTE, reason, acute), (EMERGENCY, em_reason_full, emergency)):
        for i, (_code, _w, _dep, drugs) in enumerate(table):
            grp = base & (rsn == i) & wants_rx
            if not drugs or not grp.any():
                continue
            gidx = np.flatnonzero(grp)
            got = np.zeros(len(gidx), dtype=bool)
            for key, p in drugs:
                pick = rng.random(len(gidx)) < p
                got |= pick
                pv.append(gidx[pick])
                pd_.append(np.full(pick.sum(), d.DRUG_INDEX[key]))
            pv.append(gidx[~got])
            pd_.append(np.full((~got).sum(), d.DRUG_INDEX[drugs[0][0]]))
    items = pd.DataFrame({"v": np.concatenate(pv), "drug": np.concatenate(pd_)})
    items = items.drop_duplicates().sort_values(["v", "drug"], kind="stable")
    items["line_no"] = items.groupby("v").cumcount().to_numpy() + 1
    items = items[items.line_no <= 5].reset_index(drop=True)
    cat = pd.DataFrame(d.DRUG_CATALOGS[c.vendor])
    iv = items.v.to_numpy()
    ci = cat.iloc[items.drug.to_numpy()].reset_index(drop=True)
    days_v = np.where(chronic, rng.choice([28, 30, 14], n, p=[.6, .3, .1]),
                      rng.choice([3, 5, 7], n, p=[.4, .35, .25]))
    days = days_v[iv]
    qty = np.maximum(1, np.ceil(days * ci.units_per_day.to_numpy() / ci.pack_units.to_numpy()))
    price = ci.unit_price.to_numpy(dtype=float)
    amount = np.round(qty * price, 2)
    rx_v = np.unique(iv)
    rx_ids = ids.take("prescriptions", len(rx_v))
    rx_of_v = np.full(n, -1, dtype=np.int64)
    rx_of_v[rx_v] = rx_ids
    rx_time_v = diag_time + rng.integers(1 * MIN, 6 * MIN, n).astype("timedelta64[us]")
    western = ci.kind.to_numpy() == "western"
    wsum = np.bincount(iv, weights=np.where(western, amount, 0), minlength=n)
    tsum = np.bincount(iv, weights=np.where(western, 0, amount), minlength=n)
    wsum, tsum = np.round(wsum, 2), np.round(tsum, 2)
    rx_type = np.where(wsum[rx_v] > 0, loc["rx_type"]["western"], loc["rx_type"]["tcm_patent"])
    rx = pd.DataFrame({
        "rx_id": rx_ids, "org_code": c.org_code,
        "rx_no": _prefixed(c.vendor, "rx", rx_time_v[rx_v], rx_ids),
        "reg_id": reg_ids[rx_v], "doctor_code": doctor[rx_v], "rx_time": rx_time_v[rx_v],
        "rx_type": rx_type.astype(object), "total_amount": np.round(wsum[rx_v] + tsum[rx_v], 2),
    })
    rx["_arrival"] = rx.rx_time.to_numpy() + _lat(rng, len(rx))
    it = pd.DataFrame({
        "item_id": ids.take("prescription_items", len(items)), "org_code": c.org_code,
        "rx_id": rx_of_v[iv], "line_no": items.line_no.to_numpy(),
        "drug_code": ci.drug_code.to_numpy(dtype=object),
        "drug_name": ci.drug_name.to_numpy(dtype=object), "spec": ci.spec.to_numpy(dtype=object),
        "dosage_form": ci.dosage_form.to_numpy(dtype=object),
        "dose": ci.dose.to_numpy(dtype=float), "dose_unit": ci.dose_unit.to_numpy(dtype=object),
        "route": ci.route.map(loc["route"]).to_numpy(dtype=object),
        "frequency": ci.frequency.map(loc["frequency"]).to_numpy(dtype=object),
        "days": days, "quantity": qty, "unit_price": price, "amount": amount,
        "rx_time": rx_time_v[iv],
    })
    it["_arrival"] = it.rx_time.to_numpy() + _lat(rng, len(it))
    u = rng.random(len(it))
    bad = np.flatnonzero(u < defect_rate * ITEM_DEFECT_SHARE)
    for i in bad:
        old = it.at[i, "drug_code"]
        it.at[i, "drug_code"] = "TMP" + old
        defects.append(("unmapped_drug", "prescription_items", int(it.at[i, "item_id"]),
                        c.org_code, f"drug_code {old} -> TMP{old} (not in the catalog)"))
    # charges
    ins = v.ins.to_numpy()
    pay_c = np.array([PAY[x][0] for x in ins], dtype=object)
    ratio = np.array([PAY[x][1] for x in ins])
    pay_local = pd.Series(pay_c).map(loc["pay_method"]).to_numpy(dtype=object)
    charge_time_v = rx_time_v + rng.integers(2 * MIN, 30 * MIN, n).astype("timedelta64[us]")
    exam = np.zeros(n)
    treat = np.zeros(n)
    for tbl, out in ((EXAMS, exam), (TREATS, treat)):
        for code, (p, amounts) in tbl.items():
            m = seen & (primary == code) & (rng.random(n) < p)
            out[m] = np.asarray(amounts, dtype=float)[rng.integers(0, len(amounts), m.sum())]
    fl = loc["fee_category"]
    parts = [  # (visit idx, fee category, amount, rx_id or -1, time)
        (np.arange(n), fl["registration"], fee, np.full(n, -1), reg_time),
        (np.flatnonzero(wsum > 0), fl["western_drug"], wsum, rx_of_v, charge_time_v),
        (np.flatnonzero(tsum > 0), fl["tcm_patent_drug"], tsum, rx_of_v, charge_time_v),
        (np.flatnonzero(exam > 0), fl["examination"], exam, np.full(n, -1), charge_time_v),
        (np.flatnonzero(treat > 0), fl["treatment"], treat, np.full(n, -1), charge_time_v),
    ]
    cv = np.concatenate([p[0] for p in parts])
    cfee = np.concatenate([np.full(len(p[0]), p[1], dtype=object) for p in parts])
    camt = np.concatenate([p[2][p[0]] for p in parts])
    crx = np.concatenate([p[3][p[0]] for p in parts])
    ctime = np.concatenate([p[4][p[0]] for p in parts])
    o = np.lexsort((cv, ctime))
    cv, cfee, camt, crx, ctime = cv[o], cfee[o], camt[o], crx[o], ctime[o]
    cins = np.round(camt * ratio[cv], 2)
    ch_ids = ids.take("charges", len(cv))
    ch = pd.DataFrame({
        "charge_id": ch_ids, "org_code": c.org_code,
        "charge_no": _prefixed(c.vendor, "charge", ctime, ch_ids), "reg_id": reg_ids[cv],
        "rx_id": pd.array(np.where(crx >= 0, crx, 0), dtype="Int64"),
        "fee_category": cfee, "amount": np.round(camt, 2), "pay_method": pay_local[cv],
        "insurance_amount": cins, "self_amount": np.round(camt - cins, 2), "charge_time": ctime,
        "refund_of": pd.array(np.zeros(len(cv), dtype=np.int64), dtype="Int64"),
    })
    ch.loc[crx < 0, "rx_id"] = pd.NA
    ch["refund_of"] = pd.NA
    ch["_arrival"] = ctime + _lat(rng, len(ch))
    # refunds: cancelled registrations, and ~0.5% of drug charges (the drugs are returned)
    reg_fee_code = fl["registration"]
    ref_reg = (cfee == reg_fee_code) & cancelled[cv]
    refunded_rx = rx_ids[rng.random(len(rx_ids)) < 0.005]
    ref_drug = np.isin(crx, refunded_rx) & (cfee != reg_fee_code)
    drug_refund_time_rx = {}
    ref_time = np.where(ref_reg, cancel_time[cv], np.datetime64("NaT", "us"))
    later = ctime + rng.integers(1 * HOUR, 72 * HOUR, len(cv)).astype("timedelta64[us]")
    ref_time = np.where(ref_drug, later, ref_time)
    r = np.flatnonzero(ref_reg | ref_drug)
    for i in r:
        if ref_drug[i]:
            drug_refund_time_rx[int(crx[i])] = max(drug_refund_time_rx.get(int(crx[i]), ref_time[i]),
                                                   ref_time[i])
    r_ids = ids.take("charges", len(r))
    refunds = pd.DataFrame({
        "charge_id": r_ids, "org_code": c.org_code,
        "charge_no": _prefixed(c.vendor, "refund", ref_time[r], r_ids), "reg_id": reg_ids[cv[r]],
        "rx_id": ch.rx_id.array[r], "fee_category": cfee[r], "amount": -np.round(camt[r], 2),
        "pay_method": pay_local[cv[r]], "insurance_amount": -cins[r],
        "self_amount": -np.round(camt[r] - cins[r], 2), "charge_time": ref_time[r],
        "refund_of": pd.array(ch_ids[r], dtype="Int64"),
    })
    refunds["_arrival"] = ref_time[r] + _lat(rng, len(r))
    charges = pd.concat([ch, refunds], ignore_index=True)
    # dispensing
    pharm = c.staff[c.staff.role == "pharmacist"].staff_code.to_numpy()
    disp_time = charge_time_v[rx_v] + rng.integers(3 * MIN, 20 * MIN, len(rx_v)).astype("timedelta64[us]")
    returned = np.isin(rx_ids, list(drug_refund_time_rx))
    dl = loc["dispense_status"]
    dis = pd.DataFrame({
        "dispense_id": ids.take("dispenses", len(rx_v)), "org_code": c.org_code, "rx_id": rx_ids,
        "pharmacist_code": pharm[rng.integers(0, len(pharm), len(rx_v))].astype(object),
        "dispense_time": disp_time,
        "status": np.where(returned, dl["returned"], dl["dispensed"]).astype(object),
    })
    arr = disp_time.copy()
    for k in np.flatnonzero(returned):
        arr[k] = max(arr[k], drug_refund_time_rx[int(rx_ids[k])])
    dis["_arrival"] = arr + _lat(rng, len(dis))
    return {"prescriptions": rx, "prescription_items": it, "charges": charges, "dispenses": dis}


def _prefixed(vendor: str, what: str, t: np.ndarray, ids: np.ndarray) -> np.ndarray:
    pre = {"vendor_a": {"rx": "CF", "charge": "SF", "refund": "TF", "contract": "QY"},
           "vendor_b": {"rx": "9", "charge": "8", "refund": "7", "contract": "6"},
           "vendor_c": {"rx": "RX-", "charge": "FY-", "refund": "TF-", "contract": "JY-"}}[vendor][what]
    if not len(ids):
        return np.empty(0, dtype=object)
    ymd = np.char.replace(np.datetime_as_string(t, unit="D"), "-", "")
    return np.char.add(np.char.add(pre, ymd), np.char.zfill(ids.astype("U12"), 10)).astype(object)


def _registration_defects(c, rng, frames, defect_rate, defects, cancelled, ids) -> None:
    reg = frames["registrations"]
    n = len(reg)
    u = rng.random(n)
    k = rng.integers(0, 1 << 30, n)
    edges = np.cumsum([s for _, s in REG_DEFECTS]) * defect_rate
    kind_idx = np.searchsorted(edges, u, side="right")
    dup_src = []
    dept, kindcol, vno = (reg[k].to_numpy(dtype=object).copy()
                          for k in ("dept_code", "visit_kind", "visit_no"))
    rtime = reg["reg_time"].to_numpy().copy()
    rids = reg["reg_id"].to_numpy()
    for i in np.flatnonzero(kind_idx < len(REG_DEFECTS)):
        kind = REG_DEFECTS[kind_idx[i]][0]
        if kind in ("future_time", "duplicate_row") and cancelled[i]:
            continue
        rid = int(rids[i])
        if kind == "unmapped_dept":
            bad = {"vendor_a": "NK99", "vendor_b": "1999", "vendor_c": "0999"}[c.vendor]
            detail = f"dept_code {dept[i]} -> {bad}"
            dept[i] = bad
        elif kind == "future_time":
            shift = int(k[i] % (70 * 3600)) + 2 * 3600
            rtime[i] = rtime[i] + np.timedelta64(shift, "s")
            detail = f"reg_time moved {shift // 60} minutes past its arrival"
        elif kind == "duplicate_row":
            dup_src.append(i)
            continue
        elif kind == "whitespace":
            detail = f"visit_kind {kindcol[i]!r} padded"
            kindcol[i] = (" " + kindcol[i]) if k[i] % 2 else (kindcol[i] + " ")
        else:  # fullwidth_digits
            vno[i] = fullwidth(vno[i])
            detail = f"visit_no {vno[i]}"
        defects.append((kind, "registrations", rid, c.org_code, detail))
    reg["dept_code"], reg["visit_kind"], reg["visit_no"], reg["reg_time"] = dept, kindcol, vno, rtime
    if dup_src:
        dup = reg.iloc[dup_src].copy()
        dup["reg_id"] = ids.take("registrations", len(dup))
        dup["_arrival"] = dup["_arrival"].to_numpy() + rng.integers(
            1 * SEC, 8 * SEC, len(dup)).astype("timedelta64[us]")
        for orig, new in zip(reg.reg_id.to_numpy()[dup_src], dup.reg_id.to_numpy(), strict=True):
            defects.append(("duplicate_row", "registrations", int(new), c.org_code,
                            f"duplicate of reg_id {int(orig)}"))
        frames["registrations"] = pd.concat([reg, dup], ignore_index=True)


def _followups(c, pop, days, dow, t0, t1, rng, ids, defect_rate, defects):
    wd = np.flatnonzero(dow < 5)
    ex = pop[(pop.created.to_numpy() < t0) & pop.eligible.to_numpy()]
    if not len(wd) or not len(ex):
        return {}
    p = min(1.0, 0.92 * len(days) / 91.3)
    parts = []
    for disease in ("hypertension", "diabetes"):
        m = ex.htn.to_numpy() if disease == "hypertension" else ex.dm.to_numpy()
        pids = ex.patient_id.to_numpy()[m & (rng.random(len(ex)) < p)]
        parts.append(pd.DataFrame({"patient_id": pids, "disease": disease}))
    f = pd.concat(parts, ignore_index=True)
    n = len(f)
    t = (days[wd[rng.integers(0, len(wd), n)]].astype(US)
         + ((8.5 * 3600 + rng.random(n) * 7.5 * 3600) * SEC).astype(np.int64).astype("timedelta64[us]"))
    keep = (t >= t0) & (t < t1)
    f, t = f[keep].reset_index(drop=True), t[keep]
    o = np.argsort(t, kind="stable")
    f, t = f.iloc[o].reset_index(drop=True), t[o]
    n = len(f)
    is_htn = (f.disease == "hypertension").to_numpy()
    method = rng.choice(["clinic", "home", "phone"], n, p=[.7, .1, .2])
    sbp = np.where(is_htn, rng.normal(136, 14, n), rng.normal(128, 12, n)).round().clip(90, 210)
    dbp = np.where(is_htn, rng.normal(82, 9, n), rng.normal(78, 8, n)).round()
    dbp = np.minimum(dbp.clip(50, 130), sbp - 15)
    bp_missing = (method == "phone") & (rng.random(n) < 0.5)
    glu = np.where(is_htn, rng.normal(5.8, 0.7, n),
                   np.exp(rng.normal(np.log(7.3), 0.22, n))).clip(3.5, 25).round(1)
    glu_missing = is_htn & (rng.random(n) < 0.75)
    _team, doc = _team_doctor(c, f.patient_id.to_numpy())
    fu = pd.DataFrame({
        "followup_id": ids.take("chronic_followups", n), "org_code": c.org_code,
        "patient_id": f.patient_id.to_numpy(),
        "disease": f.disease.map(c.loc("disease")).to_numpy(dtype=object), "followup_time": t,
        "method": pd.Series(method).map(c.loc("followup_method")).to_numpy(dtype=object),
        "sbp": pd.array(np.where(bp_missing, 0, sbp).astype(np.int64), dtype="Int64"),
        "dbp": pd.array(np.where(bp_missing, 0, dbp).astype(np.int64), dtype="Int64"),
        "fasting_glucose": np.where(glu_missing, np.nan, glu),
        "adherence": pd.Series(rng.choice(["regular", "intermittent", "none"], n, p=[.7, .25, .05])
                               ).map(c.loc("adherence")).to_numpy(dtype=object),
        "doctor_code": doc,
    })
    fu.loc[bp_missing, ["sbp", "dbp"]] = pd.NA
    u = rng.random(n)
    k = rng.integers(0, 1 << 30, n)
    share = defect_rate * FOLLOWUP_DEFECT_SHARE
    for i in np.flatnonzero(u < share):
        fid = int(fu.at[i, "followup_id"])
        if u[i] < share / 2 and not bp_missing[i]:
            s = int(fu.at[i, "sbp"])
            variant = k[i] % 3
            if variant == 0:
                fu.at[i, "sbp"] = s * 10 if s * 10 > 300 else 310 + int(k[i] % 90)
            elif variant == 1:
                fu.at[i, "sbp"] = 20 + int(k[i] % 25)
            else:
                fu.at[i, "dbp"], fu.at[i, "sbp"] = s, int(fu.at[i, "dbp"])
            defects.append(("implausible_bp", "chronic_followups", fid, c.org_code,
                            f"sbp {fu.at[i, 'sbp']} dbp {fu.at[i, 'dbp']}"))
        elif u[i] >= share / 2 and not glu_missing[i]:
            g = float(fu.at[i, "fasting_glucose"])
            fu.at[i, "fasting_glucose"] = round(g * 18, 1) if k[i] % 2 else 0.5
            defects.append(("implausible_glucose", "chronic_followups", fid, c.org_code,
                            f"fasting_glucose {fu.at[i, 'fasting_glucose']}"))
    fu["_arrival"] = t + _lat(rng, n)
    return {"chronic_followups": fu}


def contract_rows(c: Center, pids: np.ndarray, signed: np.ndarray, package: np.ndarray,
                  status: np.ndarray, ids: Ids, rng) -> pd.DataFrame:
    n = len(pids)
    team, doc = _team_doctor(c, pids)
    cids = ids.take("family_contracts", n)
    start = signed.astype("datetime64[D]")
    end = (start.astype("datetime64[Y]") + 1).astype("datetime64[D]") \
        + (start - start.astype("datetime64[Y]").astype("datetime64[D]")) - 1
    df = pd.DataFrame({
        "contract_id": cids, "org_code": c.org_code,
        "contract_no": _prefixed(c.vendor, "contract", signed, cids), "patient_id": pids,
        "team_code": team, "doctor_code": doc,
        "package_code": pd.Series(package).map(c.loc("service_package")).to_numpy(dtype=object),
        "signed_time": signed, "start_date": start, "end_date": end,
        "status": pd.Series(status).map(c.loc("contract_status")).to_numpy(dtype=object),
    })
    df["_arrival"] = signed + _lat(rng, n)
    return df


def packages(pop: pd.DataFrame) -> np.ndarray:
    return np.select([pop.dm.to_numpy(), pop.htn.to_numpy(), pop.age.to_numpy() >= 65],
                     ["diabetes", "hypertension", "elderly"], "basic").astype(object)


def initial_contracts(c: Center, st: CenterState, start: np.datetime64, rng, ids) -> pd.DataFrame:
    """Contracts signed during the year before the simulation starts."""
    pop = st.pop
    age = pop.age.to_numpy()
    p = np.where(pop.htn | pop.dm, 0.7, np.where(age >= 65, 0.6, np.where(age >= 18, 0.15, 0.05)))
    m = (rng.random(len(pop)) < p) & pop.eligible.to_numpy()
    sub = pop[m]
    signed = (np.datetime64(start, "D") - rng.integers(1, 366, len(sub)).astype("timedelta64[D]")
              ).astype(US) + ((8.5 + rng.random(len(sub)) * 7.5) * HOUR).astype(np.int64).astype("timedelta64[us]")
    signed = np.maximum(signed, sub.created.to_numpy() + np.timedelta64(1, "h"))
    status = np.where(rng.random(len(sub)) < 0.03, "terminated", "active")
    df = contract_rows(c, sub.patient_id.to_numpy(), signed, packages(sub), status, ids, rng)
    ends = np.full(len(pop), np.datetime64("NaT"), dtype="datetime64[D]")
    ends[np.flatnonzero(m)[status == "active"]] = df.end_date.to_numpy().astype("datetime64[D]")[status == "active"]
    pop["contract_end"] = ends
    return df


def _contracts(c, st, days, dow, t0, t1, rng, ids):
    pop = st.pop
    ends = pop.contract_end.to_numpy().astype("datetime64[D]")
    eligible = pop.eligible.to_numpy() & (pop.created.to_numpy() < t0) & (pop.age.to_numpy() >= 18)
    d0, d1 = np.datetime64(t0, "D"), np.datetime64(t1 - np.timedelta64(1, "us"), "D")
    renew = eligible & ~np.isnat(ends) & (ends >= d0) & (ends <= d1) & (rng.random(len(pop)) < 0.9)
    p_new = 0.004 * len(days) / 30.44 * np.where(pop.htn | pop.dm | (pop.age >= 65), 3, 1)
    new = eligible & np.isnat(ends) & (rng.random(len(pop)) < p_new)
    m = renew | new
    idx = np.flatnonzero(m)
    wd = np.flatnonzero(dow < 5)
    if not len(idx) or not len(wd):
        return {}
    day = days[wd[rng.integers(0, len(wd), len(idx))]]
    signed = day.astype(US) + ((8.5 + rng.random(len(idx)) * 7.5) * HOUR).astype(np.int64).astype("timedelta64[us]")
    keep = (signed >= t0) & (signed < t1)
    idx, signed = idx[keep], signed[keep]
    o = np.argsort(signed, kind="stable")
    idx, signed = idx[o], signed[o]
    sub = pop.iloc[idx]
    status = np.where(rng.random(len(idx)) < 0.015, "terminated", "active")
    df = contract_rows(c, sub.patient_id.to_numpy(), signed, packages(sub), status, ids, rng)
    ends[idx] = np.where(status == "active", df.end_date.to_numpy().astype("datetime64[D]"),
                         np.datetime64("NaT"))
    pop["contract_end"] = ends
    return {"family_contracts": df}
