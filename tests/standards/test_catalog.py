"""The standard's reference data: data elements, value sets, crosswalks, schemas."""

from __future__ import annotations

import re

import pytest
from jsonschema import Draft202012Validator

from hisx.standards import catalog
from hisx.standards.datasets import DATASETS, json_schema
from hisx.standards.schemas import load_schema

DE_RE = re.compile(r"^DE\d{2}\.\d{2}\.\d{3}\.\d{2}$")


def test_data_elements_are_well_formed():
    des = catalog.data_elements()
    assert des["DE02.01.040.00"].value_set == "gender"
    assert des["DE02.01.030.00"].type == "S1"
    for de in des.values():
        assert catalog.DE_ID_RE.match(de.de_id), de.de_id
        assert de.type in catalog.DATA_TYPES, de
        assert de.edition, de
        if de.de_id.startswith("DE"):
            assert DE_RE.match(de.de_id)
            assert "WS" in de.edition
        if de.value_set:
            assert de.value_set in catalog.value_sets(), de


def test_value_sets_have_code_system_edition_and_status():
    vs = catalog.value_sets()
    for v in vs.values():
        assert v.code_system and v.edition and v.codes, v.name
        assert v.status in {"verified", "partly-verified", "unverified", "hisx-local"}, v.name
    assert list(vs["gender"].codes) == ["0", "1", "2", "9"]
    assert vs["id_type"].code_system == "CV02.01.101"
    assert vs["pay_method"].code_system == "CV07.10.005"
    assert vs["route"].code_system == "CV06.00.102"
    assert vs["insurance_type"].code_system == "CV02.01.204"
    assert vs["department"].status == "unverified"
    assert vs["visit_status"].status == "hisx-local"


def test_ethnicity_has_all_56_plus_97_98():
    eth = catalog.value_set("ethnicity")
    assert [f"{i:02d}" for i in range(1, 57)] + ["97", "98"] == list(eth.codes)
    assert eth.codes["01"] == "汉族" and eth.codes["46"] == "德昂族"


def test_crosswalks_connect_existing_codes():
    cws = catalog.crosswalks()
    assert {"id_type_nhsa__id_type", "id_type_basy__id_type", "pay_method_basy__pay_method",
            "route_legacy__route", "insurance_type_nhsa__insurance_type"} <= set(cws)
    for cw in cws.values():
        src, dst = catalog.value_set(cw.from_value_set), catalog.value_set(cw.to_value_set)
        assert src.code_system != dst.code_system
        assert set(cw.mapping) == set(src.codes), cw.name  # total over the source system
        assert set(cw.mapping.values()) <= set(dst.codes), cw.name
    route = catalog.crosswalk("route_legacy", "route")
    assert route.mapping["606"] == "607"  # legacy 606 滴眼 -> current 607 滴眼
    assert catalog.value_set("route").codes["606"] == "气管内用药"
    assert catalog.crosswalk("pay_method_basy", "pay_method").mapping["9"] == "99"


def test_unknown_value_set_names_the_known_ones():
    with pytest.raises(KeyError, match="known"):
        catalog.value_set("nope")


def test_icd_pattern_and_chronic_groups():
    rx = re.compile(catalog.ICD10_PATTERN)
    for ok in ("I10.x00", "I10.x00x002", "E14.900x001", "A17.000+G01*", "J06.900", "I10"):
        assert rx.match(ok), ok
    for bad in ("I10.X00", "i10.x00", "I10.x00x00", "110.x00", "I10.x0", ""):
        assert not rx.match(bad), bad
    assert catalog.CHRONIC_GROUPS == {"HTN": ("I10", "I15"), "DM": ("E10", "E14")}


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_schema_is_valid_and_committed(dataset):
    schema = load_schema(dataset)
    Draft202012Validator.check_schema(schema)
    assert schema == json_schema(dataset), "schemas/ is stale: run write_schemas()"
    common = ["tenant", "source_key", "row_version", "business_time", "business_date",
              "map_version", "load_id"]
    assert list(schema["properties"])[:7] == common
    for name, prop in schema["properties"].items():
        assert prop["x-data-element"] in catalog.data_elements(), name
        if "x-value-set" in prop:
            codes = list(catalog.value_set(prop["x-value-set"]).codes)
            assert [c for c in prop["enum"] if c is not None] == codes


def test_schemas_name_data_elements_for_key_fields():
    p = load_schema("person")["properties"]
    assert p["gender_code"]["x-data-element"] == "DE02.01.040.00"
    assert p["gender_code"]["x-value-set"] == "gender"
    assert p["id_no_masked"]["x-data-element"] == "DE02.01.030.00"
    assert "id_no" not in p and "name" not in p and "phone" not in p
    d = load_schema("diagnosis")["properties"]
    assert d["icd_code"]["pattern"] == catalog.ICD10_PATTERN
    c = load_schema("charge")["properties"]
    assert c["amount"]["x-sql-type"] == "NUMERIC(14,2)"
    assert c["pay_method_code"]["x-code-system"] == "CV07.10.005"
