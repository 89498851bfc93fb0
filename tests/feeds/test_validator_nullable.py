"""Nullable coded fields (enum with None) stay on the vectorized path and accept nulls."""

from __future__ import annotations

import pyarrow as pa

from hisx.connectors import feeds_validator as fv

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["code"],
    "properties": {"code": {"type": ["string", "null"], "enum": ["HTN", "DM", None]}},
}


def test_nullable_enum_is_vectorized_and_nulls_are_not_suspects() -> None:
    v = fv.ColumnValidator(SCHEMA)
    assert v.vectorized
    col = pa.array(["HTN", None, "DM", None], pa.string())
    assert fv._suspects(v.columns["code"], col) == set()
    assert v.validate_columns({"code": col}, 4) == {}
    assert fv._suspects(v.columns["code"], ["HTN", None]) == set()


def test_nullable_enum_still_rejects_unknown_codes() -> None:
    v = fv.ColumnValidator(SCHEMA)
    bad = v.validate_columns({"code": pa.array(["HTN", "XX", None], pa.string())}, 3)
    assert list(bad) == [1] and bad[1] == ["invalid:code:enum"]
