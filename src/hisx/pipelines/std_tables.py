"""Warehouse DDL for standardized tables, derived from the datasets' JSON Schemas.

The JSON Schema is the contract; the table follows it, so a schema change is a table change.
"""

from __future__ import annotations

from typing import Any

from hisx.connectors.warehouse import Warehouse, ident

QUARANTINE_DDL = """
CREATE TABLE IF NOT EXISTS quarantine (
    dataset VARCHAR(60) NOT NULL,
    tenant VARCHAR(40) NOT NULL,
    source_table VARCHAR(60) NOT NULL,
    source_key BIGINT NOT NULL,
    row_version BIGINT,
    reasons TEXT NOT NULL,
    original TEXT NOT NULL,
    load_id VARCHAR(40) NOT NULL,
    quarantined_at TIMESTAMP NOT NULL
)"""


def _sql_type(prop: dict[str, Any]) -> str:
    if "x-sql-type" in prop:
        return str(prop["x-sql-type"])
    types = prop.get("type", "string")
    if isinstance(types, list):
        types = next((t for t in types if t != "null"), "string")
    fmt = prop.get("format")
    if types == "string":
        if fmt == "date":
            return "DATE"
        if fmt == "date-time":
            return "TIMESTAMP"
        n = prop.get("maxLength")
        return f"VARCHAR({n})" if n and n <= 4000 else "TEXT"
    if types == "integer":
        return "BIGINT"
    if types == "number":
        return "NUMERIC(14,2)" if prop.get("multipleOf") == 0.01 else "DOUBLE PRECISION"
    if types == "boolean":
        return "BOOLEAN"
    return "TEXT"


def std_table(dataset: str) -> str:
    return ident(f"std_{dataset}")


def std_ddl(dataset: str, schema: dict[str, Any]) -> str:
    cols = [f'"{name}" {_sql_type(p)}' for name, p in schema["properties"].items()]
    return f"CREATE TABLE IF NOT EXISTS {std_table(dataset)} ({', '.join(cols)})"


def std_columns(schema: dict[str, Any]) -> list[str]:
    return list(schema["properties"])


def ensure_std(wh: Warehouse, dataset: str, schema: dict[str, Any]) -> None:
    wh.execute(QUARANTINE_DDL)
    wh.execute(std_ddl(dataset, schema))
