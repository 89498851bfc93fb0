"""The vectorized message ids are the uuid5 ids of the contract, exactly (they are the feed's
deduplication key downstream: one changed character re-sends every message)."""

from __future__ import annotations

import uuid

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hisx.pipelines import feeds

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(INT64, INT64), min_size=1, max_size=50),
       st.text(min_size=1, max_size=12), st.sampled_from(sorted(feeds.datasets())))
def test_vectorized_ids_equal_uuid5(pairs, tenant, dataset) -> None:
    ks, vs = [k for k, _ in pairs], [v for _, v in pairs]
    got = feeds.message_ids(tenant, dataset, pa.array(ks, pa.int64()), pa.array(vs, pa.int64()))
    want = [str(uuid.uuid5(feeds.MESSAGE_NS, f"{tenant}|{dataset}|{k}|{v}")) for k, v in pairs]
    assert got.to_pylist() == want == [feeds.message_id(tenant, dataset, k, v) for k, v in pairs]


def test_empty_and_missing() -> None:
    empty = pa.array([], pa.int64())
    assert feeds.message_ids("C001", "person", empty, empty).to_pylist() == []
    with pytest.raises(ValueError, match="source key and a row version"):
        feeds.message_ids("C001", "person", pa.array([1, None]), pa.array([1, 2]))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["C001", "C002", "中心3"]), INT64, INT64),
                min_size=1, max_size=40))
def test_ids_of_several_centers_equal_uuid5(rows) -> None:
    got = feeds.message_ids(pa.array([t for t, _, _ in rows]), "charge",
                            pa.array([k for _, k, _ in rows], pa.int64()),
                            pa.array([v for _, _, v in rows], pa.int64()))
    assert got.to_pylist() == [str(uuid.uuid5(feeds.MESSAGE_NS, f"{t}|charge|{k}|{v}"))
                               for t, k, v in rows]
    with pytest.raises(ValueError, match="needs a center"):
        feeds.message_ids(pa.array([None], pa.string()), "charge", pa.array([1]), pa.array([1]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text()), max_size=20), st.integers(0, 5))
def test_json_fragments_equal_json_dumps_for_any_text(values, cut):
    """Each string value's JSON text equals json.dumps(ensure_ascii=False), escapes included,
    also for a slice of a column (the byte check reads only the slice's bytes)."""
    import json

    import pyarrow as pa

    from hisx.pipelines.feeds import _json_fragments

    col = pa.array(["\"x\\", *values, "\n"], pa.string()).slice(min(cut, 1))
    want = [json.dumps(v, ensure_ascii=False, separators=(",", ":")) for v in col.to_pylist()]
    assert _json_fragments(col).to_pylist() == want
    clean = pa.array([v for v in values if v is not None and not any(
        c in v for c in '"\\') and all(ord(c) >= 0x20 for c in v)], pa.string())
    assert _json_fragments(clean).to_pylist() == [json.dumps(v, ensure_ascii=False)
                                                  for v in clean.to_pylist()]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(), st.one_of(st.none(), st.text()),
                          st.one_of(st.none(), st.integers(-2**62, 2**62))),
                min_size=1, max_size=12), st.booleans())
def test_payload_parts_join_to_json_dumps(rows, clean) -> None:
    """The payload joined from its parts equals json.dumps of each row, whether a string
    column is passed as it is between quote literals (no nulls, nothing to escape) or as its
    quoted fragments."""
    import json

    def ok(v: str) -> bool:
        return not any(c in v for c in '"\\') and all(ord(c) >= 0x20 for c in v)

    if clean:
        rows = [(a if ok(a) else "x", b, c) for a, b, c in rows]
    cols = {"a": pa.array([a for a, _, _ in rows], pa.string()),
            "b": pa.array([b for _, b, _ in rows], pa.string()),
            "c": pa.array([c for _, _, c in rows], pa.int64())}
    parts = feeds._payload_parts(cols)
    got = pc.binary_join_element_wise(*parts, "").to_pylist()
    assert got == [json.dumps({"a": a, "b": b, "c": c}, ensure_ascii=False,
                              separators=(",", ":")) for a, b, c in rows]
    if clean:  # the clean column went in as it is, the literals around it merged
        assert any(p is cols["a"] for p in parts)
        assert not any(isinstance(p, str) and isinstance(q, str)
                       for p, q in zip(parts, parts[1:], strict=False))


def test_uuid_text_of_large_strings_and_bad_digests() -> None:
    digest = "0123456789abcdef0123456789abcdef01234567"
    want = "01234567-89ab-5def-8123-456789abcdef"
    assert feeds._uuid_text(pa.array([digest] * 2, pa.large_string())).to_pylist() == [want] * 2
    assert feeds._uuid_text(pa.array([digest, digest])[1:]).to_pylist() == [want]
    with pytest.raises(ValueError, match="40-digit"):
        feeds._uuid_text(pa.array([digest, digest[:-1]]))
