"""Property tests: hostile values in every column of every dataset never crash standardize(),
every row ends standardized, quarantined or deduplicated, and std rows always fit the schema."""

from __future__ import annotations

import math
import os
from datetime import date, datetime
from decimal import Decimal

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from hisx.pipelines.standardize import DATASETS, json_records, standardize
from hisx.standards.maps import load_maps
from hisx.standards.samples import sample_person_keys, sample_source
from hisx.standards.schemas import load_schema

T = "ORG1"
NOW = datetime(2027, 1, 1)
MAPS = load_maps(T, "vendor_b")

hostile = st.one_of(
    st.none(),
    st.just(""), st.just("   "), st.just("\x00\x01\x1f"), st.just("\u3000"),
    st.text(max_size=30),
    st.text(min_size=5000, max_size=6000, alphabet="测试ab1"),
    st.just("１２３４５６"), st.just("鍖椾含甯傛湞闃冲尯"), st.just("Ã¥Â°Ã¨"), st.just("NaN"),
    st.just("2026-13-45"), st.just("9999-12-31 23:59:59"), st.just("-1"), st.just("1e309"),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.decimals(allow_nan=True, allow_infinity=False, places=2),
    st.just(Decimal("NaN")), st.just(Decimal("sNaN")),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
    st.dates(),
    st.binary(max_size=10),
    st.lists(st.integers(), max_size=2),
    st.just(math.inf),
)


@st.composite
def hostile_frame(draw, dataset: str) -> pd.DataFrame:
    n = draw(st.integers(min_value=1, max_value=6))
    df = sample_source(dataset, n, MAPS, tenant=T, seed=draw(st.integers(0, 5)))
    df = df.astype(object)
    pk = DATASETS[dataset].pk
    df[pk] = draw(st.lists(st.integers(1, 4), min_size=n, max_size=n))  # duplicates on purpose
    cols = [c for c in df.columns if c != pk]
    for _ in range(draw(st.integers(min_value=0, max_value=8))):
        col = draw(st.sampled_from(cols))
        row = draw(st.integers(0, n - 1))
        df.at[row, col] = draw(hostile)
    return df


def _check(dataset: str, df: pd.DataFrame) -> None:
    res = standardize(dataset, df, tenant=T, vendor="vendor_b", load_id="L", now=NOW,
                      person_keys=sample_person_keys(5, T), maps=MAPS)
    assert len(df) == len(res.standardized) + len(res.quarantined) + res.deduplicated
    assert all(isinstance(r, list) and r for r in res.quarantined["reasons"])
    assert all(isinstance(o, str) for o in res.quarantined["original"])
    validator = Draft202012Validator(load_schema(dataset))
    for rec in json_records(res.standardized):
        errors = [f"{'/'.join(map(str, e.path))}: {e.message}"[:200]
                  for e in validator.iter_errors(rec)]
        assert not errors, errors


def _make(dataset: str):
    @settings(max_examples=int(os.environ.get("HISX_HYPOTHESIS_EXAMPLES", "60")), deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(df=hostile_frame(dataset))
    def prop(df):
        _check(dataset, df)
    prop.__name__ = f"test_hostile_{dataset}"
    return prop


for _name in DATASETS:
    globals()[f"test_hostile_{_name}"] = _make(_name)


def test_empty_frame():
    for dataset in DATASETS:
        df = sample_source(dataset, 1, MAPS, tenant=T).iloc[0:0]
        res = standardize(dataset, df, tenant=T, vendor="vendor_b", load_id="L", now=NOW,
                          person_keys=sample_person_keys(1, T), maps=MAPS)
        assert res.counts == {"standardized": 0, "quarantined": 0, "deduplicated": 0}
        assert list(res.standardized.columns) == list(load_schema(dataset)["properties"])


def test_whole_column_of_garbage_types():
    df = sample_source("prescription_item", 4, MAPS, tenant=T)
    df["rx_time"] = ["x", 5, None, date(2026, 1, 1)]
    df["quantity"] = ["a", None, True, [1]]
    _check("prescription_item", df)
