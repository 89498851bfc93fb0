"""The SQL share (数据共享层): read-only ``share.*`` views over the marts, per-center isolation.

PostgreSQL
    * ``share_role_tenant`` maps a login role to the tenant it may read (``*`` = the region).
    * Every mart table has row-level security enabled, with one policy for the role that owns
      the share views (``<prefix>_share_owner``, NOLOGIN, not the table owner and not a
      superuser, so RLS applies to it): a row is visible when its ``tenant`` is mapped to
      ``current_user`` — the *invoking* login role, since a view does not change
      ``current_user`` — or ``current_user`` is mapped to ``*``.
    * ``share.<mart>`` views are ``security_barrier`` views owned by that role; center and
      region login roles are members of ``<prefix>_share_reader``, which holds ``USAGE`` on
      schema ``share`` and ``SELECT`` on the views only: base tables are denied to them.
      (``security_invoker`` views would need ``SELECT`` on the base tables for every center
      role; owner-rights views keep the base tables closed and RLS still decides per invoker.)
    * The table owner (the pipeline) is not subject to RLS (no ``FORCE``), so loads are
      unaffected.

DuckDB (embedded default)
    The same ``share.*`` views and comments, no roles and no RLS: DuckDB is single-user.

Every view and column carries a ``COMMENT`` generated from the standard
(:mod:`hisx.marts.columns`).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

import pandas as pd

from hisx.connectors.warehouse import Warehouse, ident
from hisx.marts.columns import column_comment
from hisx.marts.runner import MARTS, ensure_marts, mart_description

REFERENCE = ("ref_value_set", "ref_icd10_chapter")
REF_DESCRIPTIONS = {
    "ref_value_set": "Value sets of the hisx data standard (WS 364 / GB tables / NHSA / hisx "
                     "local): code, meanings, code system, edition.",
    "ref_icd10_chapter": "ICD-10 chapters with their 3-character category ranges.",
}
PASSWORD_ENV = "HISX_SHARE_PASSWORD"
REGION = "*"
_TENANT_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


@dataclass(frozen=True)
class Roles:
    """Role names of one share installation (``prefix`` lets tests run side by side)."""

    prefix: str = "hisx"

    @property
    def owner(self) -> str:
        return ident(f"{self.prefix}_share_owner")

    @property
    def reader(self) -> str:
        return ident(f"{self.prefix}_share_reader")

    @property
    def region(self) -> str:
        return ident(f"{self.prefix}_region")

    def center(self, tenant: str) -> str:
        if not _TENANT_RE.match(tenant):
            raise ValueError(f"not a tenant code: {tenant!r}")
        return ident(f"{self.prefix}_c_{tenant.lower().replace('-', '_')}")


def _lit(text: str) -> str:
    """A SQL string literal (utility statements cannot take bound parameters)."""
    return "'" + text.replace("'", "''") + "'"


def _raw(wh: Warehouse, sql: str) -> None:
    """Run a statement with no parameter parsing (comments may contain colons)."""
    if wh.dialect == "duckdb":
        wh.con.execute(sql)  # type: ignore[attr-defined]
    else:
        wh.conn.exec_driver_sql(sql)  # type: ignore[attr-defined]
        if not wh._depth and wh.conn.in_transaction():  # type: ignore[attr-defined]
            wh.conn.commit()  # type: ignore[attr-defined]


def share_tables() -> tuple[str, ...]:
    return MARTS + REFERENCE


def _columns(wh: Warehouse, table: str) -> list[str]:
    schema = "main" if wh.dialect == "duckdb" else "public"
    df = wh.query_df("SELECT column_name FROM information_schema.columns WHERE table_name = :t "
                     "AND table_schema = :s ORDER BY ordinal_position", {"t": table, "s": schema})
    return [str(c) for c in df["column_name"]]


def _describe(table: str) -> str:
    return REF_DESCRIPTIONS.get(table) or mart_description(table)


def _comment_view(wh: Warehouse, table: str, cols: list[str]) -> None:
    _raw(wh, f"COMMENT ON VIEW share.{table} IS {_lit(_describe(table))}")
    for c in cols:
        text = column_comment(c)
        if text is None:
            raise ValueError(f"column {table}.{c} has no documentation: add it to "
                             "hisx.marts.columns.DERIVED or make it a std field")
        _raw(wh, f"COMMENT ON COLUMN share.{table}.{ident(c)} IS {_lit(text)}")


def _role_exists(wh: Warehouse, role: str) -> bool:
    return bool(wh.scalar("SELECT count(*) FROM pg_roles WHERE rolname = :r", {"r": role}))


def _ensure_role(wh: Warehouse, role: str, options: str) -> None:
    if not _role_exists(wh, role):
        _raw(wh, f"CREATE ROLE {role} {options}")


def install(wh: Warehouse, roles: Roles | None = None) -> list[str]:
    """Create (or refresh) the share schema, views, comments and, on PostgreSQL, the roles,
    mapping table and RLS policies. Idempotent. Returns the view names."""
    roles = roles or Roles()
    ensure_marts(wh)
    tables = share_tables()
    if wh.dialect == "duckdb":
        with wh.transaction():
            _raw(wh, "CREATE SCHEMA IF NOT EXISTS share")
            for t in tables:
                cols = _columns(wh, t)
                _raw(wh, f"CREATE OR REPLACE VIEW share.{t} AS SELECT "
                         f"{', '.join(cols)} FROM main.{t}")
                _comment_view(wh, t, cols)
        return [f"share.{t}" for t in tables]
    if wh.dialect != "postgresql":
        raise ValueError(f"the SQL share needs PostgreSQL or DuckDB, not {wh.dialect}")
    _ensure_role(wh, roles.owner, "NOLOGIN NOSUPERUSER NOBYPASSRLS")
    _ensure_role(wh, roles.reader, "NOLOGIN")
    owner, reader = roles.owner, roles.reader
    with wh.transaction():
        _raw(wh, "CREATE TABLE IF NOT EXISTS share_role_tenant (role_name VARCHAR(63) PRIMARY "
                 "KEY, tenant VARCHAR(40) NOT NULL)")
        _raw(wh, "REVOKE ALL ON share_role_tenant FROM PUBLIC")
        _raw(wh, f"GRANT SELECT ON share_role_tenant TO {owner}")
        _raw(wh, "CREATE SCHEMA IF NOT EXISTS share")
        _raw(wh, "REVOKE ALL ON SCHEMA share FROM PUBLIC")
        _raw(wh, f"GRANT USAGE ON SCHEMA share TO {reader}, {owner}")
        _raw(wh, f"GRANT USAGE ON SCHEMA public TO {owner}")
        visible = (f"tenant IN (SELECT m.tenant FROM share_role_tenant m "
                   f"WHERE m.role_name = current_user) OR EXISTS (SELECT 1 FROM "
                   f"share_role_tenant m WHERE m.role_name = current_user AND m.tenant = "
                   f"{_lit(REGION)})")
        for t in tables:
            cols = _columns(wh, t)
            _raw(wh, f"REVOKE ALL ON {t} FROM PUBLIC")
            _raw(wh, f"GRANT SELECT ON {t} TO {owner}")
            if "tenant" in cols:
                _raw(wh, f"ALTER TABLE {t} ENABLE ROW LEVEL SECURITY")
                _raw(wh, f"DROP POLICY IF EXISTS share_tenant ON {t}")
                _raw(wh, f"CREATE POLICY share_tenant ON {t} FOR SELECT TO {owner} "
                         f"USING ({visible})")
            _raw(wh, f"DROP VIEW IF EXISTS share.{t}")
            _raw(wh, f"CREATE VIEW share.{t} WITH (security_barrier) AS SELECT "
                     f"{', '.join(cols)} FROM public.{t}")
            _raw(wh, f"ALTER VIEW share.{t} OWNER TO {owner}")
            _raw(wh, f"REVOKE ALL ON share.{t} FROM PUBLIC")
            _raw(wh, f"GRANT SELECT ON share.{t} TO {reader}")
            _comment_view(wh, t, cols)
    return [f"share.{t}" for t in tables]


def _grant(wh: Warehouse, role: str, tenant: str, password: str | None,
           roles: Roles) -> str:
    if wh.dialect != "postgresql":
        raise ValueError("share roles exist only on PostgreSQL (DuckDB is single-user)")
    password = password or secrets.token_urlsafe(18)
    with wh.transaction():
        verb = "ALTER" if _role_exists(wh, role) else "CREATE"
        _raw(wh, f"{verb} ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS "
                 f"PASSWORD {_lit(password)}")
        _raw(wh, f"GRANT {roles.reader} TO {role}")
        wh.execute("DELETE FROM share_role_tenant WHERE role_name = :r", {"r": role})
        wh.execute("INSERT INTO share_role_tenant VALUES (:r, :t)", {"r": role, "t": tenant})
    return password


def grant_center(wh: Warehouse, tenant: str, password: str | None = None,
                 roles: Roles | None = None) -> tuple[str, str]:
    """Create or refresh a center's login role; returns (role, password)."""
    roles = roles or Roles()
    role = roles.center(tenant)
    return role, _grant(wh, role, tenant, password, roles)


def grant_region(wh: Warehouse, password: str | None = None,
                 roles: Roles | None = None) -> tuple[str, str]:
    """Create or refresh the region's login role (sees every center); (role, password)."""
    roles = roles or Roles()
    return roles.region, _grant(wh, roles.region, REGION, password, roles)


def list_roles(wh: Warehouse) -> pd.DataFrame:
    """The share login roles and the tenant each may read (``*`` = all)."""
    if wh.dialect != "postgresql":
        return pd.DataFrame(columns=["role_name", "tenant", "can_login"])
    return wh.query_df(
        "SELECT m.role_name, m.tenant, COALESCE(r.rolcanlogin, false) AS can_login "
        "FROM share_role_tenant m LEFT JOIN pg_roles r ON r.rolname = m.role_name "
        "ORDER BY m.role_name")


def drop_roles(wh: Warehouse, roles: Roles) -> None:
    """Remove an installation's roles from this database and the cluster (tests, teardown)."""
    names = [str(r) for r in list_roles(wh)["role_name"]] + [roles.reader, roles.owner]
    for r in names:
        if _role_exists(wh, r):
            _raw(wh, f"DROP OWNED BY {ident(r)} CASCADE")
            _raw(wh, f"DROP ROLE {ident(r)}")
