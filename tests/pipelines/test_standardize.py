"""standardize(): every defect kind lands in quarantine with its reason; conservation; contract."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
from jsonschema import Draft202012Validator

from hisx.pipelines.standardize import (
    DATASETS,
    QUARANTINE_COLUMNS,
    existing_keys_from_std,
    json_records,
    person_key_lookup,
    standardize,
)
from hisx.standards.maps import load_maps
from hisx.standards.samples import sample_person_keys, sample_source
from hisx.standards.schemas import load_schema

T = "ORG1"
NOW = datetime(2027, 1, 1)


def run(dataset, df, vendor="vendor_a", **kw):
    kw.setdefault("person_keys", sample_person_keys(len(df) + 10, T))
    res = standardize(dataset, df, tenant=T, vendor=vendor, load_id="L1", now=NOW, **kw)
    assert len(df) == len(res.standardized) + len(res.quarantined) + res.deduplicated
    return res


def reasons_of(res, pk):
    q = res.quarantined.set_index("source_key")
    return list(q.loc[pk, "reasons"]) if pk in q.index else []


def src(dataset, n=20, vendor="vendor_a"):
    return sample_source(dataset, n, load_maps(T, vendor), tenant=T)


@pytest.mark.parametrize("vendor", ["vendor_a", "vendor_b", "vendor_c"])
@pytest.mark.parametrize("dataset", list(DATASETS))
def test_clean_rows_standardize_and_match_schema(dataset, vendor):
    df = src(dataset, 30, vendor)
    res = run(dataset, df, vendor)
    assert len(res.standardized) == 30 and res.quarantined.empty and res.deduplicated == 0
    std = res.standardized
    assert list(std.columns) == list(load_schema(dataset)["properties"])
    assert (std["map_version"] == "2026.11.1").all() and (std["load_id"] == "L1").all()
    assert (std["tenant"] == T).all()
    validator = Draft202012Validator(load_schema(dataset))
    for rec in json_records(std):
        errors = [e.message for e in validator.iter_errors(rec)]
        assert not errors, errors[:3]


def test_person_holds_no_plain_identifiers():
    df = src("person", 10)
    res = run("person", df)
    blob = res.standardized.to_json(force_ascii=False, date_format="iso")
    for col in ("id_no", "name", "phone"):
        for value in df[col]:
            assert str(value) not in blob, col
    row = res.standardized.iloc[0]
    assert row["person_key_strength"] == "strong" and len(row["person_key"]) == 64
    assert row["id_no_masked"] == df["id_no"][0][:6] + "********" + df["id_no"][0][-4:]
    assert row["phone_masked"].count("*") == 4 and row["name_masked"].endswith("*")


def test_patient_defects_get_their_reasons():
    df = src("person", 8)
    df.loc[0, "id_no"] = None                                               # id_missing
    df.loc[1, "id_no"] = df.loc[1, "id_no"][:17] + ("0" if df.loc[1, "id_no"][17] != "0" else "1")
    df.loc[2, "birth_date"] = df.loc[2, "birth_date"] + timedelta(days=3)   # id_birth_mismatch
    df.loc[3, "gender"] = "F" if df.loc[3, "gender"] == "M" else "M"        # id_gender_mismatch
    df.loc[4, "name"] = "测试患者"                                           # test_patient
    df.loc[5, "name"] = "  王芳 "                                           # whitespace
    df.loc[5, "gender"] = " " + df.loc[5, "gender"]
    df.loc[6, "phone"] = "１３８００００１１１１"                              # fullwidth_digits
    df.loc[7, "id_no"] = " " + df.loc[7, "id_no"].replace("1", "１") + " "  # full-width ID
    res = run("person", df)
    assert reasons_of(res, 1) == ["missing:id_no"]
    assert reasons_of(res, 2) == ["invalid:id_no:checksum"]
    assert reasons_of(res, 3) == ["inconsistent:id_no:birth_date"]
    assert reasons_of(res, 4) == ["inconsistent:id_no:gender"]
    assert reasons_of(res, 5) == ["test_record:name"]
    std = res.standardized.set_index("source_key")
    assert set(std.index) == {6, 7, 8}
    assert std.loc[6, "name_masked"] == "王*" and std.loc[6, "gender_code"] in {"1", "2"}
    assert std.loc[7, "phone_masked"] == "138****1111"
    clean = run("person", src("person", 8)).standardized.set_index("source_key")
    assert std.loc[8, "person_key"] == clean.loc[8, "person_key"]
    q = res.quarantined
    assert list(q.columns) == QUARANTINE_COLUMNS
    original = json.loads(q.set_index("source_key").loc[3, "original"])
    assert original["patient_id"] == 3 and original["org_code"] == T


def test_every_reason_is_collected_not_only_the_first():
    df = src("chronic_followup", 3)
    df.loc[0, ["sbp", "dbp", "fasting_glucose"]] = [300, 170, 50.0]
    df.loc[0, "disease"] = "XX"
    df.loc[0, "followup_time"] = NOW + timedelta(days=2)
    df.loc[1, ["sbp", "dbp"]] = [100, 110]
    res = run("chronic_followup", df)
    assert sorted(reasons_of(res, 1)) == sorted([
        "implausible:sbp", "implausible:dbp", "implausible:fasting_glucose",
        "unmapped:disease:XX", "future:followup_time"])
    assert reasons_of(res, 2) == ["implausible:bp"]


def test_unmapped_department_and_drug_and_orphans():
    v = src("outpatient_visit", 4)
    v.loc[0, "dept_code"] = "NK99"
    v.loc[1, "patient_id"] = 9999
    r = run("outpatient_visit", v, person_keys=sample_person_keys(4, T))
    assert reasons_of(r, 1) == ["unmapped:dept_code:NK99"]
    assert reasons_of(r, 2) == ["orphan:patient_id"]
    with pytest.raises(ValueError, match="person_keys"):
        standardize("outpatient_visit", v, tenant=T, vendor="vendor_a", load_id="L", now=NOW)
    items = src("prescription_item", 3)
    items.loc[2, "drug_code"] = "YP99999"
    assert reasons_of(run("prescription_item", items), 3) == ["unmapped:drug_code:YP99999"]


def test_future_time_vs_arrival_and_now():
    df = src("outpatient_visit", 3)
    df.loc[0, "reg_time"] = df.loc[0, "updated_at"] + timedelta(hours=1)
    df.loc[1, "reg_time"] = NOW + timedelta(minutes=1)
    df.loc[1, "updated_at"] = NOW + timedelta(minutes=2)
    res = run("outpatient_visit", df)
    assert reasons_of(res, 1) == ["future:reg_time"] and reasons_of(res, 2) == ["future:reg_time"]
    aware = standardize("outpatient_visit", df.iloc[2:], tenant=T, vendor="vendor_a",
                        load_id="L", now=datetime(2027, 1, 1, tzinfo=None),
                        person_keys=sample_person_keys(5, T))
    assert len(aware.standardized) == 1


def test_duplicates_are_counted_not_quarantined():
    df = src("outpatient_visit", 4)
    dup = df.iloc[[1]].copy()
    dup["reg_id"] = 100  # same (org_code, visit_no), higher PK
    same_pk_older = df.iloc[[2]].copy()
    same_pk_older["row_version"] = 1  # same PK twice: the older row version goes
    both = pd.concat([df, dup, same_pk_older], ignore_index=True)
    res = run("outpatient_visit", both)
    assert res.deduplicated == 2 and res.quarantined.empty
    assert sorted(res.standardized["source_key"]) == [1, 2, 3, 4]
    assert res.standardized.set_index("source_key").loc[3, "row_version"] == 1003
    # keeping the lowest PK does not depend on arrival order
    res2 = run("outpatient_visit", both.iloc[::-1].reset_index(drop=True))
    assert sorted(res2.standardized["source_key"]) == [1, 2, 3, 4]


def test_duplicates_across_batches_with_existing_keys():
    df = src("outpatient_visit", 3)
    first = run("outpatient_visit", df.iloc[:2])
    late = df.iloc[[1, 2]].copy()
    late["reg_id"] = [50, 3]  # 50 duplicates visit 2 (already stored); 3 is new
    keys = existing_keys_from_std("outpatient_visit", first.standardized)
    res = run("outpatient_visit", late, existing_keys=keys)
    assert res.deduplicated == 1 and list(res.standardized["source_key"]) == [3]
    again = run("outpatient_visit", df.iloc[[1]], existing_keys=keys)  # same PK: an update
    assert again.deduplicated == 0 and len(again.standardized) == 1


def test_existing_keys_match_on_every_key_column_after_normalization():
    """Stored keys are narrowed to the candidates' first key column before the comparison:
    a stored key equal only in that column does not deduplicate, one written differently
    but normalizing to the same text does, among many stored keys that match nothing."""
    items = src("prescription_item", 3)
    first = run("prescription_item", items)
    stored = existing_keys_from_std("prescription_item", first.standardized)
    noise = pd.DataFrame({"rx_id": range(10_000, 12_000), "line_no": 1,
                          "source_key": range(90_000, 92_000)})
    keys = pd.concat([stored, noise], ignore_index=True).astype({"rx_id": object})
    keys.loc[1, "rx_id"] = f" {keys.loc[1, 'rx_id']} "          # stored padded: same key
    late = items.copy()
    late["item_id"] = [501, 502, 503]
    late["line_no"] = late["line_no"].astype(object)
    late.loc[0, "line_no"] = 99                                 # same rx, another line
    late.loc[2, "line_no"] = "１"                                # full-width: same key
    res = run("prescription_item", late, existing_keys=keys)
    assert res.deduplicated == 2
    assert list(res.standardized["source_key"]) == [501]


def test_money_rules():
    items = src("prescription_item", 2)
    items.loc[0, "amount"] = items.loc[0, "amount"] + 1
    assert reasons_of(run("prescription_item", items), 1) == ["invalid:amount:calc"]
    ch = src("charge", 4)
    ch.loc[0, "amount"] = -30.0                 # refund without an original
    ch.loc[1, ["amount", "refund_of"]] = [-30.0, 1]
    ch.loc[2, "refund_of"] = 1                  # positive with refund_of
    res = run("charge", ch)
    assert reasons_of(res, 1) == ["invalid:refund_of:missing"]
    assert reasons_of(res, 3) == ["inconsistent:refund_of:amount"]
    std = res.standardized.set_index("source_key")
    assert bool(std.loc[2, "is_refund"]) and std.loc[2, "refund_of_source_key"] == 1
    res = run("charge", ch.iloc[[1]], lookups={"refund_of": [77]})
    assert reasons_of(res, 2) == ["orphan:refund_of"]


def test_diagnosis_icd_and_groups():
    dx = src("diagnosis", 4)
    dx["icd_code"] = ["e11.900", "I10.X00", "ABC", None]
    res = run("diagnosis", dx)
    std = res.standardized.set_index("source_key")
    assert std.loc[1, "icd_code"] == "E11.900" and std.loc[1, "disease_group"] == "DM"
    assert std.loc[2, "icd_code"] == "I10.x00" and std.loc[2, "disease_group"] == "HTN"
    assert reasons_of(res, 3) == ["invalid:icd_code:format"]
    assert reasons_of(res, 4) == ["missing:icd_code"]


def test_other_tenant_rows_are_refused():
    df = src("dispense", 2)
    df.loc[0, "org_code"] = "ORG2"
    assert reasons_of(run("dispense", df), 1) == ["mismatch:org_code:ORG2"]


def test_person_key_lookup_feeds_visits():
    people = run("person", src("person", 5)).standardized
    keys = person_key_lookup(people)
    visits = run("outpatient_visit", src("outpatient_visit", 5), person_keys=keys)
    assert list(visits.standardized["person_key"]) == list(people["person_key"])


def test_contract_dates():
    fc = src("family_contract", 2)
    fc.loc[0, "end_date"] = date(2025, 1, 1)
    assert reasons_of(run("family_contract", fc), 1) == ["invalid:end_date:before_start"]


def test_db_like_dtypes():
    """Decimals, datetime64 columns and nullable ints as a DB driver returns them."""
    from decimal import Decimal

    items = src("prescription_item", 3)
    for c in ("quantity", "unit_price", "amount", "dose"):
        items[c] = [Decimal(str(x)) for x in items[c]]
    items["rx_time"] = pd.to_datetime(items["rx_time"])
    items["days"] = items["days"].astype("Int64")
    res = run("prescription_item", items)
    assert len(res.standardized) == 3


def test_arrow_backed_decimals_standardize_as_decimal_objects():
    """The batch reader keeps money columns Arrow-backed (``std_batches._arrow_decimal``): the
    result, quarantine reasons and originals included, is what object Decimals give."""
    from decimal import Decimal

    import pyarrow as pa

    items = src("prescription_item", 6)
    cols = ("quantity", "unit_price", "amount", "dose")
    for c in cols:
        items[c] = [Decimal(f"{x:.2f}") for x in items[c]]
    items.at[1, "amount"] = Decimal("-1.50")
    items.at[2, "unit_price"] = None
    arrow = items.copy()
    for c in cols:
        arrow[c] = pd.array(items[c].tolist(), dtype=pd.ArrowDtype(pa.decimal128(12, 2)))
    as_objects, as_arrow = run("prescription_item", items), run("prescription_item", arrow)
    assert "invalid:amount:negative" in reasons_of(as_arrow, 2)
    assert json.loads(as_arrow.quarantined.set_index("source_key").at[2, "original"]
                      )["amount"] == "-1.50"
    pd.testing.assert_frame_equal(as_arrow.standardized, as_objects.standardized)
    pd.testing.assert_frame_equal(as_arrow.quarantined, as_objects.quarantined)


def test_arrow_money_is_cast_by_arrow_not_value_by_value(monkeypatch):
    """pandas' own ``astype(float64)`` of an Arrow decimal column builds a Python object per
    value (~100x slower than Arrow's cast; it was 9 % of the charges' standardization):
    ``_to_number`` must cast with Arrow, so iterating the column is an error here."""
    from decimal import Decimal

    import pyarrow as pa

    from hisx.pipelines.standardize import _to_int, _to_number

    col = pd.Series(pd.array([Decimal("12.50"), None, Decimal("-3.00"), Decimal("7")],
                             dtype=pd.ArrowDtype(pa.decimal128(12, 2))))

    def no_iteration(self):
        raise AssertionError("a money column was iterated value by value")

    monkeypatch.setattr(pd.arrays.ArrowExtensionArray, "__iter__", no_iteration)
    monkeypatch.setattr(pd.arrays.ArrowExtensionArray, "__array__", no_iteration)
    got = _to_number(col)
    assert got.dtype == "float64"
    assert got.tolist()[0] == 12.5 and pd.isna(got[1]) and got.tolist()[2:] == [-3.0, 7.0]
    assert _to_int(col).tolist()[2:] == [-3, 7]


def test_aware_times_become_china_wall_clock():

    df = src("dispense", 2).astype({"dispense_time": object, "updated_at": object})
    df.at[0, "dispense_time"] = datetime(2026, 11, 2, 0, 30, tzinfo=UTC)
    df.at[0, "updated_at"] = datetime(2026, 11, 2, 0, 31, tzinfo=UTC)
    res = run("dispense", df)
    std = res.standardized.set_index("source_key")
    assert std.loc[1, "business_time"] == pd.Timestamp("2026-11-02 08:30")
    assert std.loc[2, "business_time"] == pd.Timestamp(df.at[1, "dispense_time"])
