"""What the API serves, as data: mart columns (parsed from the mart DDL, documented from the
standard), the dataset JSON Schemas, and Arrow -> JSON-ready rows.

One description feeds the OpenAPI (JSON Schemas), the WSDL (XSD types) and the serializers,
so REST, SOAP and the feeds cannot drift apart.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from hisx.marts.columns import column_comment
from hisx.marts.runner import MARTS, mart_description, mart_sql
from hisx.standards.datasets import DATASETS, load_schema

_COL = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s+([A-Z]+(?: PRECISION)?(?:\(\d+(?:,\d+)?\))?)"
                  r"(\s+NOT NULL)?\s*,?\s*$")


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    nullable: bool
    description: str

    @property
    def kind(self) -> str:
        """string | integer | number | boolean | date | datetime."""
        t = self.sql_type.split("(")[0]
        return {"VARCHAR": "string", "TEXT": "string", "BIGINT": "integer",
                "INTEGER": "integer", "SMALLINT": "integer", "NUMERIC": "number",
                "DECIMAL": "number", "DOUBLE PRECISION": "number", "DOUBLE": "number",
                "REAL": "number", "BOOLEAN": "boolean", "DATE": "date",
                "TIMESTAMP": "datetime"}[t]

    @property
    def max_length(self) -> int | None:
        m = re.match(r"VARCHAR\((\d+)\)", self.sql_type)
        return int(m.group(1)) if m else None


@dataclass(frozen=True)
class Mart:
    name: str
    description: str
    columns: tuple[Column, ...]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def person_level(self) -> bool:
        """Rows name persons (pseudonymous keys): reads are audited."""
        return "person_key" in self.column_names

    @property
    def filters(self) -> list[Column]:
        """Dimension columns a caller may filter on by equality (strings and booleans)."""
        return [c for c in self.columns if c.name not in ("tenant", "period_start")
                and c.kind in ("string", "boolean")]

    @property
    def order_by(self) -> str:
        """Deterministic order for stable pages."""
        names = self.column_names
        if "source_key" in names:
            return "tenant, period_start, source_key"
        return ", ".join(str(i + 1) for i in range(len(names)))


@cache
def marts() -> dict[str, Mart]:
    out = {}
    for name in MARTS:
        sql = mart_sql(name)
        body = sql[sql.index("CREATE TABLE"):]
        body = body[body.index("(") + 1: body.index(");")]
        cols = []
        for line in body.splitlines():
            m = _COL.match(line)
            if m:
                cols.append(Column(m.group(1), m.group(2), not m.group(3),
                                   column_comment(m.group(1)) or m.group(1)))
        if not cols or cols[0].name != "tenant":  # pragma: no cover - DDL changed shape
            raise RuntimeError(f"cannot read the columns of {name}")
        out[name] = Mart(name, mart_description(name), tuple(cols))
    return out


def _json_type(c: Column) -> dict[str, Any]:
    t: dict[str, Any]
    k = c.kind
    if k == "date":
        t = {"type": "string", "format": "date"}
    elif k == "datetime":
        t = {"type": "string", "format": "date-time"}
    else:
        t = {"type": k}
        if c.max_length:
            t["maxLength"] = c.max_length
    if c.nullable:
        t["type"] = [t["type"], "null"]
    t["description"] = c.description
    return t


@cache
def mart_row_schema(name: str) -> dict[str, Any]:
    m = marts()[name]
    return {"title": f"{name} row", "description": m.description, "type": "object",
            "properties": {c.name: _json_type(c) for c in m.columns},
            "required": m.column_names, "additionalProperties": False}


@cache
def record_schema(dataset: str) -> dict[str, Any]:
    """The dataset's published JSON Schema (the feed contract), embeddable in OpenAPI."""
    s = dict(load_schema(dataset))
    s.pop("$schema", None)
    s.pop("$id", None)
    return s


def datasets() -> list[str]:
    return list(DATASETS)


# -- Arrow -> JSON-ready ----------------------------------------------------------------------
#: Business times are China local wall-clock (as the sources record them; no DST), so the API
#: states the offset: RFC 3339 ``date-time`` values, still valid against the dataset schemas.
LOCAL_OFFSET = "+08:00"
#: Operational timestamps written by the pipeline in the server's local time (no known
#: offset): served as plain text, documented without ``format: date-time``.
SERVER_TIME_COLUMNS = frozenset({"last_load", "last_acked"})
SERVER_TIME_SCHEMA = {"type": ["string", "null"],
                      "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?$",
                      "description": "server local time of the pipeline (no offset)"}


def _jsonable_column(arr: pa.ChunkedArray, name: str = "") -> pa.ChunkedArray | pa.Array:
    t = arr.type
    if pa.types.is_timestamp(t):
        if t.tz is not None:
            arr = pc.local_timestamp(pc.cast(arr, pa.timestamp(t.unit, "Asia/Shanghai")))
        with contextlib.suppress(pa.ArrowInvalid):
            arr = pc.cast(arr, pa.timestamp("s"))
        text = pc.replace_substring(pc.cast(arr, pa.string()), " ", "T", max_replacements=1)
        if name in SERVER_TIME_COLUMNS:
            return text
        return pc.binary_join_element_wise(text, LOCAL_OFFSET, "")
    if pa.types.is_date(t):
        return pc.cast(arr, pa.string())
    if pa.types.is_decimal(t):  # SUM() of integers is a scale-0 decimal: keep it integral
        return pc.cast(arr, pa.int64() if t.scale == 0 else pa.float64())
    if pa.types.is_floating(t):
        return pc.if_else(pc.is_nan(arr), pa.scalar(None, t), arr)
    if pa.types.is_large_string(t):
        return pc.cast(arr, pa.string())
    return arr


def jsonable(table: pa.Table) -> pa.Table:
    """Dates/times as ISO text (``T`` separator), decimals as float, NaN as null."""
    return pa.table({n: _jsonable_column(table.column(n), n) for n in table.column_names})


def rows(table: pa.Table) -> list[dict[str, Any]]:
    return jsonable(table).to_pylist()
