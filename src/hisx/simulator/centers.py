"""Centers (tenants), their staff and static dictionary tables."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hisx.simulator import dictionaries as d
from hisx.simulator.identifiers import org_registration_code, uscc

#: Doctors per canonical department, pharmacists and nurses per center.
DOCTORS_PER_DEPT = {
    "general_practice": 12, "internal_medicine": 4, "tcm": 3, "stomatology": 2,
    "preventive_care": 3, "rehabilitation": 2, "emergency": 3, "gynecology": 1, "surgery": 1,
    "ophthalmology": 1,
}
PHARMACISTS = 5
NURSES = 14


@dataclass
class Center:
    slot: int
    org_code: str
    org_name: str
    short: str
    vendor: str
    division_code: str
    district: str
    town: str
    uscc: str
    staff: pd.DataFrame = field(default=None, repr=False)  # staff_code, role, dept, team_code

    @property
    def org_id(self) -> int:
        return self.slot + 1

    def loc(self, field_name: str) -> dict[str, str]:
        """{canonical: local code} in this center's dialect."""
        return d.to_local(self.vendor, field_name)

    def dept_codes(self) -> dict[str, str]:
        """{canonical department: local dept code}."""
        return {canon: code for code, canon in d.dept_code_map(self.vendor).items()}


def build_centers(n: int) -> list[Center]:
    """The pilot centers first, then deterministic generated centers (dialect k % 3)."""
    if not 1 <= n <= 2048:
        raise ValueError(f"centers must be between 1 and 2048, got {n}")
    out = []
    districts = dict(d.SHANGHAI_DISTRICTS)
    for k in range(n):
        if k < len(d.PILOT_CENTERS):
            p = d.PILOT_CENTERS[k]
            code8, div, name, town, short = (p["orgcode8"], p["division_code"], p["org_name"],
                                              p["town"], p["short"])
            vendor = p["vendor"]
        else:
            div, dname = d.SHANGHAI_DISTRICTS[k % len(d.SHANGHAI_DISTRICTS)]
            town = d.TOWNS[k % len(d.TOWNS)] + "街道"
            rep = k // len(d.TOWNS)
            name = f"上海市{dname}{town}{'' if rep == 0 else f'第{rep + 1}'}社区卫生服务中心"
            code8 = f"426{(k * 7919) % 100000:05d}"
            vendor = d.VENDORS[k % 3]
            short = f"center{k + 1:03d}"
        org_code = org_registration_code(code8, div)
        out.append(Center(slot=k, org_code=org_code, org_name=name, short=short, vendor=vendor,
                          division_code=div, district=districts[div], town=town,
                          uscc=uscc(div, org_code[:9])))
    return out


def resolve_center(name: str, centers: list[Center]) -> Center:
    for c in centers:
        if name in (c.org_code, c.short):
            return c
    raise ValueError(f"unknown center {name!r}: use an org_code or one of "
                     f"{', '.join(c.short for c in centers)}")


def _names(rng: np.random.Generator, n: int) -> np.ndarray:
    sur = rng.choice(np.array(d.SURNAMES), n)
    g1 = rng.choice(np.array(d.GIVEN_CHARS), n)
    g2 = np.where(rng.random(n) < 0.7, rng.choice(np.array(d.GIVEN_CHARS), n), "")
    return np.char.add(np.char.add(sur, g1), g2)


def _staff_code(vendor: str, i: int) -> str:
    return {"vendor_a": f"A{10000 + i}", "vendor_b": f"{200100 + i}",
            "vendor_c": f"GH{i + 1:04d}"}[vendor]


def make_staff(c: Center, seed: int) -> pd.DataFrame:
    """Doctors per department (GP doctors lead family-doctor teams), pharmacists, nurses."""
    rng = np.random.default_rng([seed, c.slot, 17])
    rows = []
    i = 0
    teams = DOCTORS_PER_DEPT["general_practice"]
    for dept, k in DOCTORS_PER_DEPT.items():
        for j in range(k):
            team = f"T{j + 1:02d}" if dept == "general_practice" else None
            rows.append((_staff_code(c.vendor, i), "doctor", dept, team))
            i += 1
    for _ in range(PHARMACISTS):
        rows.append((_staff_code(c.vendor, i), "pharmacist", None, None))
        i += 1
    for j in range(NURSES):
        team = f"T{j % teams + 1:02d}" if j < teams else None
        rows.append((_staff_code(c.vendor, i), "nurse", "general_practice", team))
        i += 1
    df = pd.DataFrame(rows, columns=["staff_code", "role", "dept", "team_code"])
    df["staff_name"] = _names(rng, len(df))
    return df


def static_frames(c: Center, ids, setup_time: np.datetime64) -> dict[str, pd.DataFrame]:
    """organizations, departments, staff and drug_catalog rows of one center."""
    depts = d.DEPARTMENTS[c.vendor]
    dept_codes = c.dept_codes()
    roles = c.loc("staff_role")
    t = np.datetime64(setup_time, "us")
    org = pd.DataFrame([{"org_id": c.org_id, "org_code": c.org_code, "org_name": c.org_name,
                         "uscc": c.uscc, "division_code": c.division_code,
                         "his_vendor": c.vendor}])
    dep = pd.DataFrame([{"dept_code": k, "dept_name": v[0]} for k, v in depts.items()])
    dep.insert(0, "org_code", c.org_code)
    dep.insert(0, "dept_id", ids.take("departments", len(dep)))
    st = c.staff
    staff = pd.DataFrame({
        "staff_id": ids.take("staff", len(st)), "org_code": c.org_code,
        "staff_code": st["staff_code"].to_numpy(), "staff_name": st["staff_name"].to_numpy(),
        "role": st["role"].map(roles).to_numpy(),
        "dept_code": st["dept"].map(dept_codes).to_numpy(),
        "team_code": st["team_code"].to_numpy(),
    })
    cat = pd.DataFrame(d.DRUG_CATALOGS[c.vendor])
    drug = pd.DataFrame({
        "drug_id": ids.take("drug_catalog", len(cat)), "org_code": c.org_code,
        "drug_code": cat["drug_code"], "drug_name": cat["drug_name"], "spec": cat["spec"],
        "dosage_form": cat["dosage_form"], "dose_unit": cat["dose_unit"],
        "unit_price": cat["unit_price"].astype(float), "insurance_code": cat["insurance_code"],
    })
    frames = {"organizations": org, "departments": dep, "staff": staff, "drug_catalog": drug}
    for i, f in enumerate(frames.values()):
        f["_arrival"] = t + np.timedelta64(i * 60, "s") + np.arange(len(f)).astype("timedelta64[ms]")
    return frames
