"""Every defect the manifest lists really holds in the data, and clean rows are clean."""

from __future__ import annotations

import re
import sqlite3

import pandas as pd
from simhelpers import read_table

from hisx.simulator import DEFECT_KINDS
from hisx.simulator import dictionaries as d

W = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
FULLWIDTH = re.compile("[\uff10-\uff19]")


def mod11_ok(id_no: str) -> bool:
    """GB 11643 check written here from the standard, independently of the simulator."""
    if not re.fullmatch(r"\d{17}[\dX]", id_no):
        return False
    s = sum(int(ch) * w for ch, w in zip(id_no[:17], W, strict=True))
    return "10X98765432"[s % 11] == id_no[17]


def _vendor_of(path) -> dict[str, str]:
    with sqlite3.connect(path) as con:
        return dict(con.execute("SELECT org_code, his_vendor FROM organizations").fetchall())


def _pks(manifest, kind, table):
    return {x["pk"] for x in manifest.defects[kind] if x["table"] == table}


def test_every_kind_present_and_records_complete(small_source):
    _, m = small_source
    assert set(m.defects) == set(DEFECT_KINDS)
    for kind in DEFECT_KINDS:
        assert m.defects[kind], kind
        for rec in m.defects[kind]:
            assert set(rec) == {"table", "pk", "org_code", "detail"}
    patients = sum(m.counts["patients"].values())
    id_defects = sum(len(m.defects[k]) for k in ("id_missing", "id_checksum",
                                                  "id_birth_mismatch", "id_gender_mismatch"))
    assert 0.005 < id_defects / patients < 0.03


def test_id_defects_hold_and_clean_ids_pass(small_source):
    path, m = small_source
    pat = read_table(path, "patients")
    vendor = pat.org_code.map(_vendor_of(path))
    id_card = [d.local_code(v, "id_type", "id_card") for v in vendor]
    pat = pat[pat.id_type == pd.Series(id_card, index=pat.index)]
    gender = [d.CODESETS["gender"][v].get(g.strip()) for v, g in zip(vendor[pat.index], pat.gender, strict=True)]
    pat = pat.assign(g=gender).set_index("patient_id")
    missing = _pks(m, "id_missing", "patients")
    checksum = _pks(m, "id_checksum", "patients")
    birth = _pks(m, "id_birth_mismatch", "patients")
    sex = _pks(m, "id_gender_mismatch", "patients")
    assert pat.loc[list(missing), "id_no"].isna().all()
    assert not any(mod11_ok(x) for x in pat.loc[list(checksum), "id_no"])
    for pid, row in pat.iterrows():
        if pid in missing:
            continue
        idn = row.id_no
        assert mod11_ok(idn) == (pid not in checksum), pid
        same_birth = idn[6:14] == str(row.birth_date).replace("-", "")
        assert same_birth == (pid not in birth), pid
        if row.g in ("male", "female"):
            id_male = int(idn[16]) % 2 == 1
            assert (id_male == (row.g == "male")) == (pid not in sex), pid


def test_registration_defects_hold(small_source):
    path, m = small_source
    reg = read_table(path, "registrations").set_index("reg_id")
    vendors = _vendor_of(path)
    known = reg.org_code.map(lambda o: set(d.DEPARTMENTS[vendors[o]]))
    in_dict = pd.Series([c in k for c, k in zip(reg.dept_code, known, strict=True)], index=reg.index)
    unmapped = _pks(m, "unmapped_dept", "registrations")
    assert set(reg.index[~in_dict]) == unmapped
    fut = _pks(m, "future_time", "registrations")
    late = pd.to_datetime(reg.reg_time) > pd.to_datetime(reg.updated_at)
    assert set(reg.index[late]) == fut
    ws = _pks(m, "whitespace", "registrations")
    padded = reg.visit_kind != reg.visit_kind.str.strip()
    assert set(reg.index[padded]) == ws
    fw = _pks(m, "fullwidth_digits", "registrations")
    assert set(reg.index[reg.visit_no.str.contains(FULLWIDTH)]) == fw
    business = [c for c in reg.columns if c not in ("updated_at", "row_version")]
    for rec in m.defects["duplicate_row"]:
        orig = int(rec["detail"].rsplit(" ", 1)[1])
        assert reg.loc[rec["pk"], business].equals(reg.loc[orig, business])
        assert reg.loc[rec["pk"], "row_version"] != reg.loc[orig, "row_version"]
    dup_visits = reg.groupby(["org_code", "visit_no"]).size()
    assert (dup_visits > 1).sum() == len(m.defects["duplicate_row"])


def test_patient_text_defects_and_test_patients(small_source):
    path, m = small_source
    pat = read_table(path, "patients").set_index("patient_id")
    ws = _pks(m, "whitespace", "patients")
    padded = (pat.name != pat.name.str.strip()) | (pat.gender != pat.gender.str.strip())
    assert set(pat.index[padded]) == ws
    fw = _pks(m, "fullwidth_digits", "patients")
    assert set(pat.index[pat.phone.fillna("").str.contains(FULLWIDTH)]) == fw
    test = _pks(m, "test_patient", "patients")
    assert pat.loc[list(test), "name"].str.contains("测试|test", case=False).all()
    for table in ("registrations", "chronic_followups", "family_contracts"):
        assert not set(read_table(path, table).patient_id) & test, table


def test_drug_and_followup_defects(small_source):
    path, m = small_source
    items = read_table(path, "prescription_items").set_index("item_id")
    vendors = _vendor_of(path)
    known = {o: set(d.drug_code_map(v)) for o, v in vendors.items()}
    bad = [code not in known[o] for code, o in zip(items.drug_code, items.org_code, strict=True)]
    assert set(items.index[bad]) == _pks(m, "unmapped_drug", "prescription_items")
    fu = read_table(path, "chronic_followups").set_index("followup_id")
    bp_bad = (fu.sbp > 300) | (fu.sbp < 50) | (fu.dbp >= fu.sbp)
    assert set(fu.index[bp_bad.fillna(False)]) == _pks(m, "implausible_bp", "chronic_followups")
    g_bad = (fu.fasting_glucose > 40) | (fu.fasting_glucose < 1)
    assert set(fu.index[g_bad.fillna(False)]) == _pks(m, "implausible_glucose", "chronic_followups")
