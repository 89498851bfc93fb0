"""Patients of a center: demographics, national ID numbers, chronic status, and their defects."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hisx.simulator import dictionaries as d
from hisx.simulator.centers import Center, _names
from hisx.simulator.identifiers import fullwidth, id_numbers, wrong_check_char

US = "datetime64[us]"
#: Population shares by age band (community centers skew old).
AGE_BANDS = ((0, 15, 0.09), (15, 35, 0.17), (35, 60, 0.33), (60, 80, 0.31), (80, 96, 0.10))
_HTN = ((35, 0.0), (45, 0.05), (60, 0.135), (75, 0.255), (200, 0.32))
_DM = ((35, 0.002), (45, 0.025), (60, 0.06), (75, 0.10), (200, 0.11))
INSURANCE = (("urban_employee", 0.62), ("urban_resident", 0.28), ("public_funded", 0.02),
             ("commercial", 0.02), ("uninsured", 0.06))
ETHNICITY = (("han", 0.975), ("hui", 0.005), ("manchu", 0.004), ("mongol", 0.003),
             ("zhuang", 0.003), ("miao", 0.002), ("tujia", 0.002), ("korean", 0.002),
             ("uyghur", 0.001), ("tibetan", 0.001), ("other", 0.002))
#: Share of patient defects per kind (of defect_rate).
PATIENT_DEFECTS = (("id_missing", 0.2), ("id_checksum", 0.2), ("id_birth_mismatch", 0.15),
                   ("id_gender_mismatch", 0.15), ("whitespace", 0.15),
                   ("fullwidth_digits", 0.1), ("test_patient", 0.05))
TEST_NAMES = ("测试", "测试患者", "test", "测试病人", "TEST")


def _band_rate(age: np.ndarray, table) -> np.ndarray:
    edges = np.array([e for e, _ in table])
    rates = np.array([r for _, r in table])
    return rates[np.searchsorted(edges, age, side="right").clip(0, len(rates) - 1)]


def _pick(rng, n, table) -> np.ndarray:
    vals = np.array([v for v, _ in table])
    p = np.array([w for _, w in table], dtype=float)
    return vals[rng.choice(len(vals), n, p=p / p.sum())]


def sample_ages(rng: np.random.Generator, n: int) -> np.ndarray:
    band = rng.choice(len(AGE_BANDS), n, p=[b[2] for b in AGE_BANDS])
    lo = np.array([b[0] for b in AGE_BANDS])[band]
    hi = np.array([b[1] for b in AGE_BANDS])[band]
    return lo + rng.random(n) * (hi - lo)


def chronic_flags(rng: np.random.Generator, age: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    htn = rng.random(len(age)) < _band_rate(age, _HTN)
    dm = rng.random(len(age)) < _band_rate(age, _DM)
    return htn, dm


def _patient_no(vendor: str, pid: np.ndarray) -> np.ndarray:
    prefix = {"vendor_a": "P", "vendor_b": "31", "vendor_c": "HN"}[vendor]
    return np.char.add(prefix, np.char.zfill(pid.astype("U12"), 9))


def make_patients(c: Center, rng: np.random.Generator, pids: np.ndarray, created: np.ndarray,
                  defect_rate: float, defects: list, age: np.ndarray | None = None,
                  ref: np.datetime64 | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Patient rows (local codes, with defects) and the population frame used by activity.

    ``age`` is the age at ``ref`` (default: at creation); creation never precedes birth.
    """
    n = len(pids)
    created = created.astype(US)
    if age is None:
        age = sample_ages(rng, n)
    base = created.astype("datetime64[D]") if ref is None else np.datetime64(ref, "D")
    birth = base - np.round(age * 365.25).astype("timedelta64[D]")
    created = np.maximum(created, (birth + np.timedelta64(30, "D")).astype(US)
                         + (created - created.astype("datetime64[D]").astype(US)))
    male = rng.random(n) < 0.47
    ins = _pick(rng, n, INSURANCE)
    ins = np.where(age < 18, "urban_resident", ins)
    htn, dm = chronic_flags(rng, age)
    # ID documents
    u = rng.random(n)
    id_type = np.full(n, "id_card", dtype=object)
    id_type[(age < 16) & (u < 0.4)] = "household_register"
    rare = rng.random(n)
    for kind, lo, hi in (("passport", 0.0, 0.005), ("hk_macau_pass", 0.005, 0.009),
                         ("taiwan_pass", 0.009, 0.012), ("military_officer", 0.012, 0.014),
                         ("other", 0.014, 0.017)):
        id_type[(rare >= lo) & (rare < hi) & (age >= 16)] = kind
    id_div = np.array(d.ID_DIVISIONS)[rng.integers(0, len(d.ID_DIVISIONS), n)]
    national = id_numbers(id_div, birth, male, rng)
    digits8 = np.char.zfill(rng.integers(0, 10**8, n).astype("U8"), 8)
    id_no = national.astype(object)
    id_no[id_type == "passport"] = np.char.add("E", digits8)[id_type == "passport"]
    id_no[id_type == "hk_macau_pass"] = np.char.add("H", digits8)[id_type == "hk_macau_pass"]
    id_no[id_type == "taiwan_pass"] = digits8[id_type == "taiwan_pass"]
    id_no[id_type == "military_officer"] = np.char.add("军字第", digits8)[id_type == "military_officer"]
    id_no[id_type == "other"] = None
    # contact and address
    mobile = np.char.add(np.char.add("1", rng.choice(np.array(list("35789")), n)),
                         np.char.zfill(rng.integers(0, 10**9, n).astype("U9"), 9))
    land = np.char.add("021-", np.char.zfill(rng.integers(2 * 10**7, 7 * 10**7, n).astype("U8"), 8))
    phone = np.where(rng.random(n) < 0.9, mobile, land).astype(object)
    local_div = rng.random(n) < 0.9
    div_codes = np.array([k for k, _ in d.SHANGHAI_DISTRICTS])
    div_names = np.array([v for _, v in d.SHANGHAI_DISTRICTS])
    other = rng.integers(0, len(div_codes), n)
    pdiv = np.where(local_div, c.division_code, div_codes[other])
    pdname = np.where(local_div, c.district, div_names[other])
    road = np.array(d.ROADS)[rng.integers(0, len(d.ROADS), n)]
    town = np.where(local_div, c.town, "")
    addr = (np.char.add(np.char.add(np.char.add("上海市", pdname), town), road).astype(object)
            + pd.Series(rng.integers(1, 1200, n)).astype(str).to_numpy(dtype=object) + "弄"
            + pd.Series(rng.integers(1, 60, n)).astype(str).to_numpy(dtype=object) + "号"
            + pd.Series(rng.integers(101, 1802, n)).astype(str).to_numpy(dtype=object) + "室")
    eth = _pick(rng, n, ETHNICITY)
    mar = np.where(age < 22, "unmarried",
                   np.where(age < 30, np.where(rng.random(n) < 0.5, "unmarried", "married"),
                            "married")).astype(object)
    mr = rng.random(n)
    mar[(age >= 30) & (mr < 0.05)] = "divorced"
    mar[(age >= 65) & (mr > 1 - np.clip((age - 60) / 80, 0, 0.4))] = "widowed"
    mar[rng.random(n) < 0.01] = "unknown"
    names = _names(rng, n).astype(object)
    gender_canon = np.where(male, "male", "female").astype(object)
    gender_canon[rng.random(n) < 0.001] = "unknown"
    gl, itl = c.loc("gender"), c.loc("id_type")
    pat = pd.DataFrame({
        "patient_id": pids, "org_code": c.org_code,
        "patient_no": _patient_no(c.vendor, pids),
        "name": names, "gender": pd.Series(gender_canon).map(gl).to_numpy(dtype=object),
        "birth_date": birth, "id_type": pd.Series(id_type).map(itl).to_numpy(dtype=object),
        "id_no": id_no, "phone": phone, "division_code": pdiv, "address": addr,
        "ethnicity": pd.Series(eth).map(c.loc("ethnicity")).to_numpy(dtype=object),
        "marital_status": pd.Series(mar).map(c.loc("marital_status")).to_numpy(dtype=object),
        "insurance_type": pd.Series(ins).map(c.loc("insurance_type")).to_numpy(dtype=object),
        "is_deleted": np.zeros(n, dtype=np.int64), "created_at": created,
    })
    eligible = np.ones(n, dtype=bool)
    _patient_defects(c, rng, pat, id_type, gender_canon, eligible, defect_rate, defects)
    pop = pd.DataFrame({"patient_id": pids, "age": age, "male": male, "ins": ins,
                        "htn": htn & eligible, "dm": dm & eligible, "eligible": eligible,
                        "created": created})
    return pat, pop


def _patient_defects(c: Center, rng, pat: pd.DataFrame, id_type, gender_canon, eligible,
                     defect_rate: float, defects: list) -> None:
    n = len(pat)
    u = rng.random(n)
    k = rng.integers(0, 1 << 30, n)
    edges = np.cumsum([s for _, s in PATIENT_DEFECTS]) * defect_rate
    kind_idx = np.searchsorted(edges, u, side="right")
    idcard = (id_type == "id_card") & pd.notna(pat["id_no"]).to_numpy()
    gl = c.loc("gender")
    cols = {k: pat[k].to_numpy(dtype=object).copy() for k in ("id_no", "gender", "name", "phone")}
    birth = pat["birth_date"].to_numpy().copy()
    pids = pat["patient_id"].to_numpy()
    for i in np.flatnonzero(kind_idx < len(PATIENT_DEFECTS)):
        kind = PATIENT_DEFECTS[kind_idx[i]][0]
        pid = int(pids[i])
        detail = None
        if kind.startswith("id_") and not idcard[i]:
            continue
        if kind == "id_gender_mismatch" and gender_canon[i] == "unknown":
            continue
        if kind == "id_missing":
            cols["id_no"][i] = None
            detail = "id_type is the ID card, id_no is NULL"
        elif kind == "id_checksum":
            old = cols["id_no"][i]
            cols["id_no"][i] = wrong_check_char(old, int(k[i]))
            detail = f"check char {old[17]} -> {cols['id_no'][i][17]}"
        elif kind == "id_birth_mismatch":
            shift = int(k[i] % 700) + 1
            shift = shift if k[i] % 2 else -shift
            birth[i] = birth[i] + np.timedelta64(shift, "D")
            detail = f"birth_date shifted {shift:+d} days from the ID"
        elif kind == "id_gender_mismatch":
            flip = "female" if gender_canon[i] == "male" else "male"
            cols["gender"][i] = gl[flip]
            detail = f"gender {flip} contradicts the ID sex digit"
        elif kind == "whitespace":
            col = "name" if k[i] % 2 else "gender"
            v = cols[col][i]
            cols[col][i] = (" " + v) if k[i] % 4 < 2 else (v + "  ")
            detail = f"{col} {cols[col][i]!r}"
        elif kind == "fullwidth_digits":
            cols["phone"][i] = fullwidth(cols["phone"][i])
            detail = f"phone {cols['phone'][i]}"
        elif kind == "test_patient":
            cols["name"][i] = TEST_NAMES[k[i] % len(TEST_NAMES)]
            eligible[i] = False
            detail = f"name {cols['name'][i]!r}"
        defects.append((kind, "patients", pid, c.org_code, detail))
    for k2, arr in cols.items():
        pat[k2] = arr
    pat["birth_date"] = birth
