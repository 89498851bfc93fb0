"""Vectorized validators: GB 11643, ICD-10, time, vitals, money, test records."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from hisx.standards import validators as v
from hisx.standards.pseudonym import check_char

MONTH13 = "11010519491331002" + check_char("11010519491331002")
WORKED = ["11010519491231002X", "440524188001010014", "34052419800101001X",
          "370101190102039973"]


def S(*xs):
    return pd.Series(list(xs), dtype=object)


def test_worked_id_examples_pass():
    ids = S(*WORKED)
    births = S(date(1949, 12, 31), date(1880, 1, 1), date(1980, 1, 1), date(1901, 2, 3))
    genders = S("2", "1", "1", "1")
    checks = v.validate_national_id(ids, births, genders)
    for name, mask in checks.items():
        assert not mask.any(), name
    assert list(v.id_check_chars(ids)) == ["X", "4", "X", "3"]


def test_wrong_ids_are_named():
    ids = S("110105194912310021",  # wrong check char
            "11010519491231002x",  # lower-case x is a format error (callers upper-case first)
            "1101051949123100",    # too short
            MONTH13,               # month 13: not a real date
            "11010519491231002X",  # birth date mismatch vs record
            "11010519491231002X",  # gender mismatch (sequence 002 is even = female)
            None)
    births = S(None, None, None, None, date(1950, 1, 1), date(1949, 12, 31), None)
    genders = S(None, None, None, None, "2", "1", "1")
    c = v.validate_national_id(ids, births, genders)
    assert list(c["checksum"]) == [True, False, False, False, False, False, False]
    assert list(c["format"]) == [False, True, True, False, False, False, False]
    assert c["birth_date"][3]
    assert list(c["birth_mismatch"]) == [False, False, False, False, True, False, False]
    assert list(c["gender_mismatch"]) == [False, False, False, False, False, True, False]


def test_legacy_15_digit_flagged_not_failed():
    c = v.validate_national_id(S("110105491231002"), S(date(1949, 12, 31)), S("2"))
    assert c["legacy15"][0]
    assert not (c["format"][0] or c["checksum"][0] or c["birth_mismatch"][0]
                or c["gender_mismatch"][0])


def test_icd_normalize_and_validate():
    codes = v.normalize_icd(S("i10.X00X002", " E11.900 ", "A17.000+g01*", "X59.900", "bad", None))
    assert list(codes[:4]) == ["I10.x00x002", "E11.900", "A17.000+G01*", "X59.900"]
    assert list(v.invalid_icd(codes)) == [False, False, False, False, True, False]
    groups = v.disease_group(S("I10.x00", "I15.900", "I16.000", "E10.900", "E14.900x001",
                               "E15.000", None))
    assert list(groups) == ["HTN", "HTN", None, "DM", "DM", None, None]


def test_after():
    t = pd.Series(pd.to_datetime(["2026-01-01 10:00", "2026-01-03 00:00", None]))
    assert list(v.after(t, datetime(2026, 1, 2))) == [False, True, False]


def test_bp_and_glucose():
    bp = v.implausible_bp(S(120, 400, 59, 90, None), S(80, 80, 40, 95, 20))
    assert list(bp["sbp"]) == [False, True, True, False, False]
    assert list(bp["dbp"]) == [False, False, False, False, True]
    assert list(bp["bp"]) == [False, False, False, True, False]
    assert list(v.implausible_glucose(S(5.6, 0.5, 35.0, 40, None))) == [
        False, True, False, True, False]


def test_money():
    mism = v.amount_mismatch(S(9.24, 9.30, 10), S(2, 2, None), S(4.62, 4.62, 5))
    assert list(mism) == [False, True, False]
    assert list(v.negative(S(-1, 0, "x"))) == [True, False, False]


def test_test_names_and_text_normalization():
    assert list(v.test_names(S("测试患者", "TEST", "张伟", None, 5))) == [
        True, True, False, False, False]
    assert list(v.normalize_text(S(" ａｂ１ ", "", None))) == ["ab1", None, None]
    assert list(v.as_str(S(12, 1.0, "  x ", b"y", None))) == ["12", "1", "x", "y", None]


_ID_TEXT = st.one_of(
    st.none(),
    # well-formed numbers with a real or unreal date, the right check character
    st.builds(lambda area, y, m, d, seq: (lambda b: b + check_char(b))(
        f"{area:06d}{y:04d}{m:02d}{d:02d}{seq:03d}"),
              st.integers(0, 999999),
              st.one_of(st.sampled_from([0, 1, 1900, 2000, 2023, 2024, 2100, 9999]),
                        st.integers(0, 9999)),
              st.one_of(st.just(2), st.integers(0, 13)),
              st.one_of(st.sampled_from([0, 1, 28, 29, 30, 31]), st.integers(0, 32)),
              st.integers(0, 999)),
    st.builds(lambda area, y, m, d, seq: f"{area:06d}{y:02d}{m:02d}{d:02d}{seq:03d}",
              st.integers(0, 999999), st.integers(0, 99), st.integers(0, 13),
              st.integers(0, 32), st.integers(0, 999)),
    # near misses: any digits, X, x, other scripts' digits, spaces, of lengths around 15/18
    st.text(alphabet="0123456789Xx٣१ a", min_size=14, max_size=19),
    st.text(max_size=20))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_ID_TEXT, st.one_of(st.none(), st.just("id"), st.dates(date(1, 1, 1))),
                          st.sampled_from([None, "1", "2", "9", "女"])),
                min_size=1, max_size=30))
def test_column_wise_id_checks_equal_the_value_by_value_reference(rows) -> None:
    ids = S(*[r[0] for r in rows])
    own = v.id_birth_dates(ids)  # "id": the record's birth date is the number's own
    births = S(*[(None if pd.isna(own[i]) or own[i].year < 1 else own[i].date())
                 if r[1] == "id" else r[1]
                 for i, r in enumerate(rows)])
    genders = S(*[r[2] for r in rows])
    got = v.validate_national_id(ids, births, genders)
    want = v.validate_national_id_rows(ids, births, genders)
    assert got.keys() == want.keys()
    for k in want:
        assert got[k].dtype == bool, k
        assert got[k].tolist() == want[k].tolist(), k


def test_leap_days_and_year_zero_as_the_reference_reads_them() -> None:
    days = ["20000229", "19000229", "20240229", "20230229", "00000229", "21000229",
            "20240431", "20241231", "20241301", "20240100"]
    ids = S(*[(lambda b: b + check_char(b))(f"110105{d}002") for d in days],
            "110105000229002", "110105960229002", "110105970229002")
    got = v.validate_national_id(ids)["birth_date"].tolist()
    assert got == v.validate_national_id_rows(ids)["birth_date"].tolist()
    assert got == [False, True, False, True, False, True, True, False, True, True,
                   True, False, True]
