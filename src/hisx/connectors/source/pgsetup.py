"""The PostgreSQL side of the row_version contract (the tests' stand-in for ROWVERSION):
one database-wide sequence (CACHE 1) and a function that assigns the transaction id
*before* taking the number, set on every INSERT and UPDATE by a trigger. The commit-safe
fence in :mod:`hisx.connectors.source.extract` relies on that order."""

from __future__ import annotations

import sqlalchemy as sa

FUNCTION_DDL = """
CREATE SEQUENCE IF NOT EXISTS public.hisx_row_version_seq CACHE 1;
CREATE OR REPLACE FUNCTION public.hisx_next_row_version() RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  PERFORM pg_current_xact_id();          -- xid first: see extract.py (fences)
  RETURN nextval('public.hisx_row_version_seq');
END $$;
CREATE OR REPLACE FUNCTION public.hisx_set_row_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.row_version := public.hisx_next_row_version();
  NEW.updated_at := clock_timestamp();
  RETURN NEW;
END $$;
"""


def trigger_ddl(table: sa.Table) -> str:
    name, full = table.name, table.fullname
    return (f"DROP TRIGGER IF EXISTS {name}_row_version ON {full};\n"
            f"CREATE TRIGGER {name}_row_version BEFORE INSERT OR UPDATE ON {full} "
            f"FOR EACH ROW EXECUTE FUNCTION public.hisx_set_row_version();")


def install_row_version(engine: sa.Engine, tables: list[sa.Table]) -> None:
    """Create the tables (if missing) and the row_version machinery on a PG primary."""
    with engine.begin() as c:
        for s in {t.schema for t in tables if t.schema}:
            c.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {s}")
        c.exec_driver_sql(FUNCTION_DDL)
    tables[0].metadata.create_all(engine, tables=tables)
    with engine.begin() as c:
        for t in tables:
            c.exec_driver_sql(trigger_ddl(t))
