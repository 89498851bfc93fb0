"""Vendor/center code maps: files load, are unique, point into the value sets, overrides work."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from hisx.standards import catalog
from hisx.standards.maps import MAPS_DIR, MapError, load_maps, map_version, read_map_file, vendors

#: every map the standardizer asks for, with its target value set (None = no value set)
NEEDED = {"gender": "gender", "id_type": "id_type", "ethnicity": "ethnicity",
          "marital_status": "marital_status", "insurance_type": "insurance_type",
          "department": "department", "first_visit": "first_visit", "visit_type": "visit_type",
          "visit_status": "visit_status", "rx_type": "rx_type", "drug": None, "route": "route",
          "frequency": "frequency", "fee_category": "fee_category", "pay_method": "pay_method",
          "dispense_status": "dispense_status", "disease_group": "disease_group",
          "followup_method": "followup_method", "adherence": "adherence",
          "contract_status": "contract_status", "service_package": "service_package"}


def test_version_and_vendors():
    assert map_version() == "2026.11.1"
    assert vendors() == ["vendor_a", "vendor_b", "vendor_c"]


@pytest.mark.parametrize("vendor", ["vendor_a", "vendor_b", "vendor_c"])
def test_vendor_maps_are_complete_unique_and_standard(vendor):
    for path in sorted((MAPS_DIR / "vendors" / vendor).glob("*.csv")):
        rows = read_map_file(path)  # raises on duplicate local codes / bad header
        assert rows, path
    ms = load_maps("ANY-ORG", vendor)
    assert set(NEEDED) <= set(ms.maps)
    for name, vs_name in NEEDED.items():
        cm = ms.get(name)
        if vs_name is None:
            assert all(len(c) in (20, 23) and c[0] in "XZ" for c in cm.mapping.values())
            continue
        vs = catalog.value_set(vs_name)
        assert set(cm.mapping.values()) <= set(vs.codes), (vendor, name)
        systems = {vs.code_system, vs.edition} | {
            catalog.value_set(cw.from_value_set).code_system
            for cw in catalog.crosswalks().values() if cw.to_value_set == vs_name}
        assert set(cm.code_system.values()) <= systems, (vendor, name)


def test_lookup_normalizes_fullwidth_case_and_space():
    ms = load_maps("ANY", "vendor_a")
    got = ms.get("gender").map_series(pd.Series(["M", " m ", "Ｍ", "X", None], dtype=object))
    assert list(got) == ["1", "1", "1", None, None]


def _copy_maps(tmp_path: Path) -> Path:
    d = tmp_path / "maps"
    shutil.copytree(MAPS_DIR, d)
    return d


def test_center_override_and_declared_vendor(tmp_path):
    d = _copy_maps(tmp_path)
    center = d / "centers" / "ORG-X"
    center.mkdir(parents=True)
    (center / "department.csv").write_text(
        "local_code,standard_code,code_system,note\nQK01,50,NHC.ZLKM,this center's QK01 is TCM\n"
        "NEW9,20,NHC.ZLKM,a department only this center has\n", encoding="utf-8")
    (center / "vendor.txt").write_text("vendor_a\n", encoding="utf-8")
    ms = load_maps("ORG-X", maps_dir=d)
    assert ms.vendor == "vendor_a"
    dept = ms.get("department")
    assert dept.mapping["qk01"] == "50" and dept.mapping["new9"] == "20"
    assert dept.mapping["nk01"] == "03"  # untouched vendor entries stay
    assert load_maps("ORG-Y", "vendor_a", maps_dir=d).get("department").mapping["qk01"] == "02"


def test_errors_are_specific(tmp_path):
    d = _copy_maps(tmp_path)
    with pytest.raises(MapError, match="unknown HIS vendor"):
        load_maps("ORG", "vendor_zz", maps_dir=d)
    with pytest.raises(MapError, match="no vendor"):
        load_maps("ORG-NONE", maps_dir=d)
    bad = d / "vendors" / "vendor_a" / "gender.csv"
    bad.write_text("local_code,standard_code,code_system,note\nM,1,x,\nｍ,1,x,\n", encoding="utf-8")
    with pytest.raises(MapError, match="duplicate local_code"):
        read_map_file(bad)
    bad.write_text("code,std\nM,1\n", encoding="utf-8")
    with pytest.raises(MapError, match="header"):
        read_map_file(bad)


def test_rows_in_a_competing_code_system_go_through_the_crosswalk():
    ins = load_maps("ANY", "vendor_c").get("insurance_type")
    assert ins.mapping["310"] == "01" and ins.mapping["390"] == "02" and ins.mapping["340"] == "99"
    assert ins.code_system["310"] == "NHSA insutype"  # the system the center really uses is kept
    assert ins.mapping["sy"] == "07"
