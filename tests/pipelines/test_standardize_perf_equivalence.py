"""The fast paths of standardization (Arrow text normalization, per-distinct-value mapping,
per-distinct-day dates, vectorized person keys) agree with plain per-value definitions."""

from __future__ import annotations

import unicodedata
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hisx.pipelines.standardize import DATASETS, _dates, standardize
from hisx.standards import validators as v
from hisx.standards.maps import load_maps, map_key
from hisx.standards.samples import sample_person_keys, sample_source

TENANT = "EQ-ORG"
WEIRD = [" ", "\t", "\x1c", "\x1f", "\x85", "\xa0", "\u3000", "\u2028", "\u200b", "\x00", "a",
         "Z", "1", "１", "Ａ", "é", "e\u0301", "ﬁ", "张", "ｶ", "ﾞ", "㍿", "Ⅻ", "x"]


def _ref(x: object) -> object:
    """as_str of one text value, by definition."""
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return None
    t = unicodedata.normalize("NFKC", x).strip()
    return t or None


texts = st.lists(st.one_of(st.none(), st.just(float("nan")),
                           st.lists(st.sampled_from(WEIRD), max_size=6).map("".join),
                           st.text(max_size=8)), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(texts)
def test_as_str_matches_per_value_definition(values):
    expected = [_ref(x) for x in values]
    for s in (pd.Series(values, dtype=object), pd.Series(values, dtype="str"),
              pd.Series(values, dtype=object, index=np.arange(len(values)) * 3 + 7)):
        got = v.as_str(s)
        assert got.dtype == object and got.index.equals(s.index)
        assert got.tolist() == expected


def test_as_str_integer_columns_are_decimal_text():
    s = pd.Series(np.array([np.iinfo(np.int64).min, -1, 0, 42, np.iinfo(np.int64).max]))
    assert v.as_str(s).tolist() == [str(int(x)) for x in s]
    assert v.as_str(pd.Series([1, None], dtype="Int64")).tolist() == ["1", None]


@settings(max_examples=100, deadline=None)
@given(texts)
def test_map_series_matches_map_key_lookup(values):
    cm = load_maps(TENANT, "vendor_a").get("department")
    locals_ = list(cm.originals)
    values = values + locals_[:3] + [" " + locals_[0].upper() + "\u3000"]
    got = cm.map_series(pd.Series(values, dtype=object)).tolist()
    assert got == [cm.mapping.get(map_key(x)) if isinstance(x, str) else None for x in values]


def test_dates_one_object_per_day_matches_dt_date():
    ts = pd.Series(pd.to_datetime(["2026-11-02 08:00", None, "0001-01-02 00:00",
                                   "9999-12-30 23:59", "2026-11-02 23:59"])).astype(
        "datetime64[us]")
    got = _dates(ts).tolist()
    assert got == [None if pd.isna(x) else x.date() for x in ts]


@pytest.mark.parametrize("dataset", ["outpatient_visit", "prescription_item"])
def test_object_and_arrow_text_columns_standardize_alike(dataset):
    maps = load_maps(TENANT, "vendor_a")
    df = sample_source(dataset, 300, maps, tenant=TENANT)
    text_cols = [c for c in df.columns if df[c].dtype == "str"]
    # perturb codes the way centers type them: full-width, padded, odd case
    df.loc[::7, text_cols[1]] = "\u3000" + df.loc[::7, text_cols[1]].str.upper() + " "
    df.loc[::11, text_cols[2]] = "\uff24\uff10\uff10\uff11"
    df.loc[::13, text_cols[-1]] = "  "
    df.loc[::17, "org_code"] = " \t"
    keys = sample_person_keys(300, TENANT)
    kw = dict(tenant=TENANT, vendor="vendor_a", load_id="eq", now=datetime(2027, 1, 1),
              person_keys=keys, maps=maps)
    a = standardize(dataset, df, **kw)
    b = standardize(dataset, df.astype({c: object for c in text_cols}), **kw)
    pd.testing.assert_frame_equal(a.standardized, b.standardized, check_exact=True)
    pd.testing.assert_frame_equal(a.quarantined, b.quarantined, check_exact=True)
    assert a.deduplicated == b.deduplicated
    assert len(a.quarantined) > 0  # the blank org_code is caught as missing


def _dedupe_ref(rows: list[tuple]) -> set[int]:
    """Positions kept, by definition: per PK the highest row version (then the first row);
    then per complete natural key the lowest PK (then the first row)."""
    best: dict[int, int] = {}
    for i, (pk, rv, *_nk) in enumerate(rows):
        if pk is None:
            continue
        j = best.get(pk)
        if j is None or (rv if rv is not None else -1) > (rows[j][1] if rows[j][1] is not None
                                                          else -1):
            best[pk] = i
    kept = [i for i, r in enumerate(rows) if r[0] is None or best[r[0]] == i]
    winner: dict[tuple, int] = {}
    for i in kept:
        nk = rows[i][2:]
        if any(x is None for x in nk):
            continue
        rank = (rows[i][0] if rows[i][0] is not None else 2**62, i)
        if nk not in winner or rank < winner[nk][0]:
            winner[nk] = (rank, i)
    return {i for i in kept if any(x is None for x in rows[i][2:])
            or winner[rows[i][2:]][1] == i}


small = st.one_of(st.none(), st.integers(0, 4))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(small, small, st.sampled_from(["C1", "C2"]),
                          st.one_of(st.none(), st.sampled_from(["a", " a", "b"]))),
                min_size=1, max_size=25))
def test_dedupe_matches_per_row_definition(rows):
    """The vectorized PK and natural-key deduplication keeps exactly the rows the plain
    definition keeps (repeated PKs, missing versions, incomplete keys)."""
    from hisx.pipelines.standardize import DATASETS, _dedupe

    spec = DATASETS["charge"]  # natural key (org_code, charge_no)
    df = pd.DataFrame({spec.pk: pd.array([r[0] for r in rows], dtype="Int64"),
                       "row_version": pd.array([r[1] for r in rows], dtype="Int64"),
                       "org_code": [r[2] for r in rows], "charge_no": [r[3] for r in rows]})
    assert spec.natural_key == ("org_code", "charge_no")
    out, dropped = _dedupe(spec, df, pd.Series(df["org_code"].to_numpy(), dtype=object))
    norm = [(pk, rv, org, None if no is None else no.strip()) for pk, rv, org, no in rows]
    assert set(out.index) == _dedupe_ref(norm)
    assert dropped == len(rows) - len(out)


PHONES = ["138 1234 5678", "+86-138-1234-5678", "１３８１２３４５６７８", "٣٤٥١٢", "²³", "abc", "",
          "  ", None, "010-1234567 转 89", "13812345678901234567890", "5"]


@pytest.mark.parametrize("rotate", [0, 5])
def test_phone_digits_match_per_character_definition(rotate: int) -> None:
    """The phone's hash and mask are those of its ASCII digits after ``as_str`` (a Python
    loop per character, by definition), for full-width, Arabic-Indic and superscript digits,
    separators, blanks and missing numbers."""
    from hisx.standards import pseudonym

    maps = load_maps(TENANT, "vendor_a")
    df = sample_source("person", len(PHONES), maps, tenant=TENANT)
    phones = PHONES[rotate:] + PHONES[:rotate]
    df["phone"] = pd.Series(phones, dtype=object)
    key = pseudonym.key_from_text("phone-eq-key-0000000000")
    res = standardize("person", df, tenant=TENANT, vendor="vendor_a", load_id="eq",
                      now=datetime(2027, 1, 1), maps=maps, pseudo_key=key)
    assert len(res.standardized) == len(df)
    by_key = dict(zip(df[DATASETS["person"].pk], phones, strict=True))
    for _, row in res.standardized.iterrows():
        raw = by_key[row["source_key"]]
        text = _ref(raw)
        digits = "".join(c for c in text if c.isdigit() and c.isascii()) if text else ""
        assert row["phone_masked"] == pseudonym.mask_phone(digits or None)
        want = pseudonym.hmac_hex(key, "phone:" + digits) if digits else None
        assert row["phone_hash"] == want
