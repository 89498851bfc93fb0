"""The SQL share: per-center isolation on real PostgreSQL (RLS + read-only roles), the DuckDB
views, comments from the standard, and a scan for plain identifiers in marts and share views."""

from __future__ import annotations

import re
import uuid

import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa

from hisx.marts import share
from hisx.marts.runner import MARTS
from hisx.standards.pseudonym import valid_id

ID18 = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
PHONE = re.compile(r"(?<![0-9A-Za-z])1[3-9]\d{9}(?![0-9A-Za-z])")


@pytest.fixture(scope="module")
def pg_share(pg_world, pg_url):
    roles = share.Roles(prefix=f"hx{uuid.uuid4().hex[:6]}")
    share.install(pg_world, roles)
    tenants = sorted(pg_world.query_df("SELECT DISTINCT tenant FROM fact_visit")["tenant"])
    creds = {t: share.grant_center(pg_world, t, roles=roles) for t in tenants}
    region = share.grant_region(pg_world, roles=roles)
    share.install(pg_world, roles)  # re-install is idempotent and keeps the grants
    yield {"roles": roles, "tenants": tenants, "creds": creds, "region": region,
           "dbname": sa.make_url(pg_url).database}
    share.drop_roles(pg_world, roles)


def connect(pg_share, role: str, password: str) -> psycopg.Connection:
    return psycopg.connect(host="127.0.0.1", port=5432, dbname=pg_share["dbname"], user=role,
                           password=password, autocommit=True)


@pytest.mark.postgres
def test_center_sees_only_its_rows_through_every_view(pg_world, pg_share) -> None:
    views = [t for t in share.share_tables() if t in MARTS]
    for tenant, (role, pw) in pg_share["creds"].items():
        with connect(pg_share, role, pw) as con:
            for v in views:
                own, other = con.execute(
                    f"SELECT count(*) FILTER (WHERE tenant = %s), "
                    f"count(*) FILTER (WHERE tenant <> %s) FROM share.{v}",
                    (tenant, tenant)).fetchone()
                base = pg_world.scalar(f"SELECT count(*) FROM {v} WHERE tenant = :t",
                                       {"t": tenant})
                assert other == 0, (role, v)
                assert own == base, (role, v)
            assert con.execute("SELECT count(*) FROM share.fact_visit").fetchone()[0] > 0
            # reference views are shared by all
            assert con.execute("SELECT count(*) FROM share.ref_value_set").fetchone()[0] > 100


@pytest.mark.postgres
def test_center_is_denied_base_tables_and_writes(pg_share) -> None:
    tenant = pg_share["tenants"][0]
    role, pw = pg_share["creds"][tenant]
    with connect(pg_share, role, pw) as con:
        for sql in ("SELECT * FROM public.fact_visit", "SELECT * FROM mart_visits_daily",
                    "SELECT * FROM std_person", "SELECT * FROM share_role_tenant",
                    "SELECT * FROM ods_patients", "SELECT * FROM quarantine",
                    "DELETE FROM share.fact_visit",
                    "INSERT INTO share.dim_center (tenant) VALUES ('x')",
                    "CREATE TABLE share.x (a int)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                con.execute(sql)


@pytest.mark.postgres
def test_region_sees_all(pg_world, pg_share) -> None:
    role, pw = pg_share["region"]
    with connect(pg_share, role, pw) as con:
        for v in MARTS:
            n = con.execute(f"SELECT count(*) FROM share.{v}").fetchone()[0]
            assert n == pg_world.scalar(f"SELECT count(*) FROM {v}"), v
            assert n > 0


@pytest.mark.postgres
def test_roles_listed_and_refreshed(pg_world, pg_share) -> None:
    roles = share.list_roles(pg_world)
    mine = roles[roles["role_name"].str.startswith(pg_share["roles"].prefix)]
    assert sorted(mine["tenant"]) == sorted([*pg_share["tenants"], "*"])
    assert mine["can_login"].all()
    tenant = pg_share["tenants"][1]
    role, pw = share.grant_center(pg_world, tenant, password="new-secret",
                                  roles=pg_share["roles"])
    assert pw == "new-secret" and role == pg_share["creds"][tenant][0]
    assert len(share.list_roles(pg_world)) == len(roles)


@pytest.mark.postgres
def test_pg_every_view_and_column_commented(pg_world, pg_share) -> None:
    df = pg_world.query_df(
        "SELECT c.relname, a.attname, col_description(c.oid, a.attnum) AS col_doc, "
        "obj_description(c.oid, 'pg_class') AS view_doc FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'share' "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 WHERE c.relkind = 'v'")
    assert set(df["relname"]) == set(share.share_tables())
    assert df["col_doc"].notna().all() and df["view_doc"].notna().all()
    doc = df.set_index(["relname", "attname"])["col_doc"]
    assert doc[("fact_visit", "dept_code")].startswith("DE08.10.025.00")
    assert "02=全科医疗科" in doc[("fact_visit", "dept_code")]
    opts = pg_world.query_df("SELECT reloptions FROM pg_class c JOIN pg_namespace n ON "
                             "n.oid = c.relnamespace WHERE n.nspname = 'share'")
    assert all("security_barrier=true" in list(o) for o in opts["reloptions"])


def test_duckdb_share_views_documented(duck_world) -> None:
    views = share.install(duck_world)
    assert len(views) == len(share.share_tables())
    docs = duck_world.query_df("SELECT table_name, column_name, comment FROM duckdb_columns() "
                               "WHERE schema_name = 'share'")
    assert set(docs["table_name"]) == set(share.share_tables())
    assert docs["comment"].notna().all()
    assert duck_world.scalar("SELECT count(*) FROM share.fact_visit") == \
        duck_world.scalar("SELECT count(*) FROM fact_visit")


def _scan(wh, relations: list[str], names: set[str]) -> list[str]:
    long_names = re.compile("|".join(sorted(re.escape(n) for n in names if len(n) >= 3)))
    hits = []
    for rel in relations:
        df = wh.query_df(f"SELECT * FROM {rel}")
        for col in df.columns:
            if not (df[col].dtype == object or pd.api.types.is_string_dtype(df[col])):
                continue
            vals = df[col].dropna().astype(str)
            for v in vals.unique():
                if any(valid_id(m.upper()) for m in ID18.findall(v)) or PHONE.search(v) or v in names or long_names.search(v):
                    hits.append(f"{rel}.{col}: {v[:40]}")
    return hits


@pytest.mark.parametrize("backend", ["duckdb", pytest.param("postgres",
                                                            marks=pytest.mark.postgres)])
def test_no_plain_identifiers_in_marts_or_share(request, backend, source_url) -> None:
    wh = request.getfixturevalue("duck_world" if backend == "duckdb" else "pg_world")
    share.install(wh, share.Roles(prefix="hxscan") if backend == "postgres" else None)
    src = pd.read_sql("SELECT name, id_no, phone FROM patients", sa.create_engine(source_url))
    names = {n.strip() for n in src["name"].dropna() if len(n.strip()) >= 2}
    # the scanner finds what it looks for where it exists (ODS keeps the source values)
    assert _scan(wh, ["ods_patients"], names)
    rels = list(MARTS) + [f"share.{t}" for t in share.share_tables()]
    assert _scan(wh, rels, names) == []
    if backend == "postgres":
        share.drop_roles(wh, share.Roles(prefix="hxscan"))
