"""Warehouse DDL for standardized tables, derived from the datasets' JSON Schemas.

The JSON Schema is the contract; the table follows it, so a schema change is a table change.
Besides the contract's columns the warehouse keeps two of its own for the data-quality marts:
each std row's source arrival (:data:`ARRIVAL`, the ODS row's ``updated_at``) and each
quarantined row's business day, so those marts read their day range instead of joining the
centers' whole ODS tables and parsing every quarantined row's JSON. Neither is published.
"""

from __future__ import annotations

from typing import Any

from hisx.connectors.warehouse import Warehouse, execute_ddl, ident, in_list

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
    quarantined_at TIMESTAMP NOT NULL,
    business_date DATE
)"""

#: the std tables' warehouse-only column: when the standardized version reached the source
#: (its ODS row's ``updated_at``); not in the dataset's schema, so not in its feed
ARRIVAL = "source_updated_at"
#: centers per statement when an older warehouse's std table gets its arrivals
MIGRATE_TENANTS = 32


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
    cols.append(f'"{ARRIVAL}" TIMESTAMP')
    return f"CREATE TABLE IF NOT EXISTS {std_table(dataset)} ({', '.join(cols)})"


def std_columns(schema: dict[str, Any]) -> list[str]:
    return list(schema["properties"])


def std_index_ddl(dataset: str, dialect: str) -> list[str]:
    """PostgreSQL's B-trees for what every batch looks up in a std table and the quarantine:
    the batch's keys (the earlier versions it replaces) and its centers' business days (the
    cross-batch dedup). Without them each batch scans the whole table, so a dataset's
    standardization grows with the square of its rows. DuckDB gets none: its ART indexes
    are held in memory, and the row groups' zonemaps already skip to the batch's keys."""
    if dialect != "postgresql":
        return []
    t = std_table(dataset)
    return [f"CREATE INDEX IF NOT EXISTS {ident(f'ix_std_{dataset}_key')} ON {t} "
            "(tenant, source_key)",
            f"CREATE INDEX IF NOT EXISTS {ident(f'ix_std_{dataset}_day')} ON {t} "
            "(tenant, business_date)",
            "CREATE INDEX IF NOT EXISTS ix_quarantine_key ON quarantine "
            "(dataset, tenant, source_key)"]


def ensure_std(wh: Warehouse, dataset: str, schema: dict[str, Any]) -> None:
    wh.execute(QUARANTINE_DDL)
    wh.execute(std_ddl(dataset, schema))
    _migrate(wh, dataset)
    execute_ddl(wh, std_index_ddl(dataset, wh.dialect))


def _has_column(wh: Warehouse, table: str, column: str) -> bool:
    return bool(wh.scalar("SELECT count(*) FROM information_schema.columns WHERE "
                          "table_name = :t AND column_name = :c", {"t": table, "c": column}))


def _migrate(wh: Warehouse, dataset: str) -> None:
    """Give tables made before the warehouse-only columns those columns, filled as the
    data-quality marts computed them before: the arrival from the ODS row, the quarantined
    row's business day from the first ten characters of its original business time."""
    from hisx.pipelines.ods import ods_name
    from hisx.standards.datasets import DATASETS

    if not _has_column(wh, "quarantine", "business_date"):
        cases = " ".join(f"WHEN '{d}' THEN CAST(original AS JSON) ->> '{s.business_time}'"
                         for d, s in DATASETS.items())
        with wh.transaction():
            wh.execute("ALTER TABLE quarantine ADD COLUMN business_date DATE")
            wh.execute("UPDATE quarantine SET business_date = CAST(SUBSTR(CASE dataset "
                       f"{cases} END, 1, 10) AS DATE)")
    table = f"std_{dataset}"
    if not _has_column(wh, table, ARRIVAL):
        spec = DATASETS[dataset]
        ods, std = ods_name(spec.source_table), ident(table)
        tenants = wh.query_df(f"SELECT DISTINCT tenant FROM {std} ORDER BY 1")["tenant"].tolist()
        with wh.transaction():
            wh.execute(f'ALTER TABLE {std} ADD COLUMN "{ARRIVAL}" TIMESTAMP')
            # a few centers per statement: one join over a city's table outgrows DuckDB's cap
            for i in range(0, len(tenants), MIGRATE_TENANTS):
                marks, names = in_list("t", tenants[i:i + MIGRATE_TENANTS])
                wh.execute(f'UPDATE {std} SET "{ARRIVAL}" = o.updated_at FROM {ods} o '
                           f"WHERE o.org_code = {std}.tenant AND o.{spec.pk} = {std}.source_key "
                           f"AND {std}.tenant IN ({marks}) AND o.org_code IN ({marks})", names)
