"""The vendor dictionaries and the center identifiers are complete and well formed."""

from __future__ import annotations

import re

from hisx.simulator import dictionaries as d
from hisx.simulator.centers import build_centers, resolve_center

USCC_ALPHA = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_W = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]


def test_codesets_cover_the_same_meanings_per_vendor():
    for field, per_vendor in d.CODESETS.items():
        assert set(per_vendor) == set(d.VENDORS), field
        meanings = {v: set(codes.values()) for v, codes in per_vendor.items()}
        assert len({frozenset(x) for x in meanings.values()}) == 1, field
        for codes in per_vendor.values():
            assert len(set(codes)) == len(codes), field
        assert field in d.FIELD_COLUMNS
    assert d.CODESETS["gender"]["vendor_a"] == {"M": "male", "F": "female", "U": "unknown"}
    assert d.local_code("vendor_c", "visit_type", "emergency") == "2"


def test_departments_and_drug_catalogs():
    for v in d.VENDORS:
        assert 8 <= len(d.DEPARTMENTS[v]) <= 12
        assert set(d.dept_code_map(v).values()) == set(d.DEPT_CANONICAL)
        assert len(d.DRUG_CATALOGS[v]) >= 40
        assert set(d.drug_code_map(v).values()) == {x["key"] for x in d.DRUGS}
    codes = [set(d.drug_code_map(v)) for v in d.VENDORS]
    assert not (codes[0] & codes[1]) and not (codes[1] & codes[2]) and not (codes[0] & codes[2])
    west = re.compile(r"^X[A-Z]\d{2}[A-Z]{2}[A-Z]\d{3}[A-Z]\d{3}\d{4}\d{5}$")
    for x in d.DRUGS:
        assert x["route"] in set(d.CODESETS["route"]["vendor_a"].values())
        assert x["frequency"] in set(d.CODESETS["frequency"]["vendor_a"].values())
        if x["kind"] == "western":
            assert west.match(x["insurance_code"]), x["key"]
        else:
            assert x["insurance_code"].startswith("Z") and len(x["insurance_code"]) == 20


def test_center_codes():
    cs = build_centers(7)
    assert [c.short for c in cs[:3]] == ["gaohang", "sanlin", "heshahangcheng"]
    assert [c.vendor for c in cs] == ["vendor_a", "vendor_b", "vendor_c"] * 2 + ["vendor_a"]
    assert len({c.org_code for c in cs}) == 7 and len({c.org_name for c in cs}) == 7
    for c in cs:
        assert len(c.org_code) == 22 and c.org_code[9:15] == c.division_code
        assert c.org_code[15:] == "11B1001"
        s = sum(USCC_ALPHA.index(ch) * w for ch, w in zip(c.uscc[:17], USCC_W, strict=True))
        assert USCC_ALPHA[(31 - s % 31) % 31] == c.uscc[17]
    assert cs[0].division_code == "310115" and "高行" in cs[0].org_name
    assert resolve_center(cs[1].org_code, cs) is cs[1]


def test_simulator_is_independent_of_the_rules_that_judge_it():
    from pathlib import Path

    import hisx.simulator

    src = Path(hisx.simulator.__file__).parent
    imports = re.compile(r"^\s*(from|import)\s+hisx\.(standards|pipelines)", re.M)
    files = list(src.glob("*.py"))
    assert len(files) >= 8
    for f in files:
        assert not imports.search(f.read_text(encoding="utf-8")), f.name
