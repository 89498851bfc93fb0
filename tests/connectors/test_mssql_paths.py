"""SQL Server code paths that cannot run here (no SQL Server on these machines): every T-SQL
statement compiled with SQLAlchemy's mssql dialect and its pyodbc dialect and checked on its
text; the ODBC Driver 18 connection string as a pure function; sources-file validation."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.dialects import mssql
from sqlalchemy.dialects.mssql.pyodbc import MSDialect_pyodbc

from hisx.connectors.source.config import (
    SourceConfigError,
    load_sources,
    mssql_odbc_connection_string,
    odbc_keywords,
    parse_source,
    split_odbc,
)
from hisx.connectors.source.endpoints import mssql_health_from_row, mssql_health_select
from hisx.connectors.source.extract import SourceExtractor, mssql_min_active_select
from hisx.connectors.source.reconcile import reconcile_select
from hisx.connectors.source.statements import compile_sql, high_water_select, page_select
from hisx.simulator import schema

T = schema.registrations


def _pyodbc_dialect():
    return MSDialect_pyodbc(paramstyle="qmark")


# The production path compiles through dialect_for("mssql"); the pyodbc dialect (what a
# mssql+pyodbc:// engine uses) must produce the same T-SQL.
DIALECTS = [pytest.param("mssql", id="mssql"), pytest.param(_pyodbc_dialect, id="mssql+pyodbc")]


def _compile(stmt, which):
    return compile_sql(stmt, which if isinstance(which, str) else which())


@pytest.mark.parametrize("which", DIALECTS)
def test_alwayson_health_query(which):
    sql, params = _compile(mssql_health_select(), which)
    flat = " ".join(sql.split())
    assert "FROM sys.dm_hadr_database_replica_states" in flat
    assert "WHERE sys.dm_hadr_database_replica_states.database_id = DB_ID()" in flat
    assert "sys.dm_hadr_database_replica_states.is_local = ?" in flat and params == [1]
    for col in ("is_primary_replica", "synchronization_health_desc", "database_state_desc",
                "redo_queue_size", "log_send_queue_size", "last_commit_time"):
        assert f"sys.dm_hadr_database_replica_states.{col}" in flat


def test_health_rows_classified():
    t = dt.datetime(2024, 3, 1, 8, 0, 0)
    ok = mssql_health_from_row("sql2", (False, "HEALTHY", "SYNCHRONIZING", "ONLINE", 0, 0,
                                        t - dt.timedelta(seconds=4)), t, 30)
    assert ok.healthy and ok.in_recovery and ok.lag == 4.0
    lag = mssql_health_from_row("sql2", (False, "HEALTHY", "SYNCHRONIZING", "ONLINE", 9, 9,
                                         t - dt.timedelta(seconds=45)), t, 30)
    assert not lag.healthy and lag.reason == "lag 45.0s > max_lag 30s"
    prim = mssql_health_from_row("sql1", (True, "HEALTHY", "SYNCHRONIZED", "ONLINE", 0, 0, t), t, 30)
    assert not prim.healthy and prim.reason == "is the primary replica"
    sick = mssql_health_from_row("sql3", (False, "NOT_HEALTHY", "NOT SYNCHRONIZING", "RECOVERING",
                                          0, 0, None), t, 30)
    assert not sick.healthy and sick.reason == "NOT_HEALTHY/RECOVERING" and sick.lag is None
    none = mssql_health_from_row("sql4", None, t, 30)
    assert not none.healthy and "not an availability-group database" in none.reason


@pytest.mark.parametrize("which", DIALECTS)
def test_min_active_rowversion_bound(which):
    sql, params = _compile(mssql_min_active_select(), which)
    assert sql == "SELECT CAST(MIN_ACTIVE_ROWVERSION() AS BIGINT) - ? AS anon_1"
    assert params == [1]


@pytest.mark.parametrize("which", DIALECTS)
def test_keyset_page_with_top_and_rowversion(which):
    sql, params = _compile(page_select(T, "mssql", "42502657200", 7, 123456789, 50_000), which)
    flat = " ".join(sql.split())
    assert flat.startswith("SELECT TOP 50000 registrations.reg_id, ")
    assert "OFFSET" not in flat.upper() and "LIMIT" not in flat.upper()
    assert "CAST(registrations.row_version AS BIGINT) AS row_version" in flat
    # DATETIME2(7) travels as style-121 text so no driver truncates the 100 ns digit
    assert "CONVERT(VARCHAR(27), registrations.reg_time, 121) AS reg_time" in flat
    assert ("WHERE registrations.org_code = ? AND registrations.row_version > CAST(? AS BINARY(8))"
            " AND registrations.row_version <= CAST(? AS BINARY(8))"
            " ORDER BY registrations.row_version") in flat
    assert params == ["42502657200", 7, 123456789]
    hw, hp = _compile(high_water_select(T, "mssql", "X"), which)
    assert " ".join(hw.split()) == ("SELECT max(CAST(registrations.row_version AS BIGINT)) AS max_1"
                                    " FROM registrations WHERE registrations.org_code = ?")
    assert hp == ["X"]


def test_keyset_page_on_a_qualified_source_schema():
    cfg = parse_source("his", {**_mssql_raw(), "schema": "dbo"})
    t = cfg.table("registrations")
    sql, _ = compile_sql(page_select(t, "mssql", None, 0, None, 10), "mssql")
    assert "FROM dbo.registrations" in sql and "ORDER BY dbo.registrations.row_version" in sql
    assert cfg.table("registrations") is t  # cached per schema


@pytest.mark.parametrize("which", DIALECTS + [pytest.param(mssql.dialect, id="unversioned")])
def test_tsql_reconciliation(which):
    stmt = reconcile_select(T, "mssql", "ORG1", dt.date(2024, 3, 1), dt.date(2024, 3, 3))
    sql, params = _compile(stmt, which if which != mssql.dialect else (lambda: mssql.dialect(paramstyle="qmark")))
    flat = " ".join(sql.split())
    day = "CONVERT(DATE, registrations.reg_time)"
    assert f"SELECT registrations.org_code, {day} AS business_date, count(*) AS n," in flat
    assert ("sum(CAST(CAST(CAST(HASHBYTES('SHA2_256', CAST(registrations.reg_id AS VARCHAR(20)))"
            " AS BINARY(8)) AS BIGINT) AS NUMERIC(38, 0))) AS pk_hash") in flat
    assert "AS DATETIME)" not in flat  # a business *day*, not a timestamp
    assert f"GROUP BY registrations.org_code, {day}" in flat
    assert "ORDER BY registrations.org_code, business_date" in flat
    assert ("WHERE registrations.org_code = ? AND registrations.reg_time >= ?"
            " AND registrations.reg_time < ?") in flat
    assert params == ["ORG1", dt.datetime(2024, 3, 1), dt.datetime(2024, 3, 4)]  # half-open


# -- connection strings ------------------------------------------------------------------------
def test_driver18_listener_connection_string():
    s = mssql_odbc_connection_string("tcp:his-ag.example,1433", "HIS", "etl", "pw")
    assert s == ("Driver={ODBC Driver 18 for SQL Server};Server=tcp:his-ag.example,1433;"
                 "Database=HIS;UID=etl;PWD=pw;ApplicationIntent=ReadOnly;MultiSubnetFailover=Yes;"
                 "Encrypt=yes;TrustServerCertificate=no;Connection Timeout=15;")
    rw = odbc_keywords(mssql_odbc_connection_string(
        "sql1", "HIS", application_intent="ReadWrite", multi_subnet_failover=False,
        encrypt=False, trust_server_certificate=True))
    assert rw["APPLICATIONINTENT"] == "ReadWrite" and rw["MULTISUBNETFAILOVER"] == "No"
    assert rw["ENCRYPT"] == "no" and rw["TRUSTSERVERCERTIFICATE"] == "yes"
    assert rw["TRUSTED_CONNECTION"] == "Yes" and "PWD" not in rw and "UID" not in rw


@pytest.mark.parametrize("pw", ["a;b", "x}y", "p{q", "}};{", " lead", "=eq=", "简单;密码}"])
def test_password_with_special_characters_is_escaped(pw):
    s = mssql_odbc_connection_string("sql1", "HIS", "etl", pw)
    kw = odbc_keywords(s)
    assert kw["PWD"] == pw  # parses back to exactly the password
    assert kw["APPLICATIONINTENT"] == "ReadOnly" and kw["DATABASE"] == "HIS"  # nothing swallowed
    raw = dict(split_odbc(s))["PWD"]
    assert raw == "{" + pw.replace("}", "}}") + "}"


def test_plain_password_stays_unbraced():
    assert "PWD=Secret123;" in mssql_odbc_connection_string("s", "d", "u", "Secret123")


@pytest.mark.parametrize("intent", ["Bogus", "readonly", "", "ReadOnly;Encrypt=no"])
def test_builder_rejects_invalid_application_intent(intent):
    with pytest.raises(SourceConfigError, match="ApplicationIntent must be one of"):
        mssql_odbc_connection_string("s", "d", application_intent=intent)


def test_builder_requires_database_for_read_only_routing():
    with pytest.raises(SourceConfigError, match="read-only routing needs Database="):
        mssql_odbc_connection_string("tcp:his-ag,1433", "")


def test_unterminated_brace_is_reported():
    with pytest.raises(SourceConfigError, match="unterminated"):
        split_odbc("Driver={x;PWD=1")


# -- the sources file --------------------------------------------------------------------------
def _mssql_raw(**over) -> dict:
    raw = {
        "dialect": "mssql",
        "primary": {"server": "tcp:sql1,1433", "database": "HIS", "user": "etl",
                    "password_env": "HISX_TEST_SRC_PW"},
        "listener": {"server": "tcp:his-ag.example,1433", "database": "HIS", "user": "etl",
                     "password_env": "HISX_TEST_SRC_PW"},
        "tenants": [{"org_code": "42502657200", "vendor": "vendor_a"}],
        "tables": ["registrations", "charges"],
        "policies": {"max_lag": 30, "on_no_healthy_replica": "wait"},
    }
    raw.update(over)
    return raw


def test_documented_listener_source_parses_and_takes_password_from_env(monkeypatch):
    monkeypatch.setenv("HISX_TEST_SRC_PW", "s;e}c")
    cfg = load_sources({"sources": {"district_his": _mssql_raw()}})["district_his"]
    (listener,) = cfg.replicas
    kw = odbc_keywords(listener.connection_string())
    assert kw["APPLICATIONINTENT"] == "ReadOnly" and kw["MULTISUBNETFAILOVER"] == "Yes"
    assert kw["DRIVER"] == "ODBC Driver 18 for SQL Server" and kw["ENCRYPT"] == "yes"
    assert kw["PWD"] == "s;e}c" and kw["UID"] == "etl"
    assert "PWD" not in odbc_keywords(listener.odbc or "")  # never stored in the config
    assert odbc_keywords(cfg.primary.connection_string())["APPLICATIONINTENT"] == "ReadWrite"
    assert cfg.missing_secrets() == []


def test_missing_password_env_fails_before_any_driver_call(monkeypatch):
    monkeypatch.delenv("HISX_TEST_SRC_PW", raising=False)
    cfg = parse_source("district_his", _mssql_raw())
    assert cfg.missing_secrets() == ["HISX_TEST_SRC_PW"]
    import pyodbc

    def no_driver(*a, **k):  # the check must come first; reaching the driver is the bug
        raise AssertionError("pyodbc.connect called before the secret check")

    monkeypatch.setattr(pyodbc, "connect", no_driver)
    with pytest.raises(SourceConfigError,
                       match=r"source 'district_his': password environment variable\(s\) not set: HISX_TEST_SRC_PW"):
        SourceExtractor(cfg)
    with pytest.raises(SourceConfigError, match="environment variable HISX_TEST_SRC_PW is not set"):
        cfg.replicas[0].connection_string()


ODBC_RO = "Driver={ODBC Driver 18 for SQL Server};Server=sql2;Database=HIS;UID=etl;ApplicationIntent=ReadOnly;"


@pytest.mark.parametrize(("over", "message"), [
    ({"replicas": [{"name": "sql2", "odbc": ODBC_RO.replace("ReadOnly", "Bogus")}]},
     r"sources\.s\.replicas\[0\]: ApplicationIntent='Bogus' is invalid \(allowed: ReadOnly, ReadWrite\); "
     "FreeTDS would crash"),
    ({"listener": {"server": "ag", "database": "HIS", "application_intent": "readonly"}},
     r"sources\.s\.listener\.application_intent: 'readonly' is invalid"),
    ({"listener": {"server": "ag", "database": "HIS", "application_intent": "ReadWrite"}},
     r"sources\.s: replica 'listener' must connect with ApplicationIntent=ReadOnly"),
    ({"replicas": [{"name": "sql2", "odbc": ODBC_RO.replace("ApplicationIntent=ReadOnly;", "")}]},
     r"replica 'sql2' must connect with ApplicationIntent=ReadOnly"),
    ({"listener": None, "replicas": []}, r"sources\.s: declare at least one replica or a listener"),
    ({"policies": {"on_no_healthy_replica": "retry"}},
     r"sources\.s\.policies\.on_no_healthy_replica: 'retry' is not one of \('wait', 'primary', 'fail'\)"),
    ({"policies": {"max_lagg": 3}}, r"sources\.s\.policies: unknown policies \['max_lagg'\]"),
    ({"policies": {"chunk_rows": 0}}, r"policies\.chunk_rows: must be a positive integer, got 0"),
    ({"policies": {"max_lag": -1}}, r"policies\.max_lag: must be a non-negative number"),
    ({"policies": {"wait_timeout_s": "5m"}}, r"policies\.wait_timeout_s: must be a positive number"),
    ({"policies": {"extraction_path": "odbc"}}, r"policies\.extraction_path: 'odbc' is not"),
    ({"dialect": "oracle"}, r"sources\.s\.dialect: 'oracle' is not one of"),
    ({"tables": ["registrations", "nope"]}, r"sources\.s\.tables: unknown table 'nope'"),
    ({"tenants": [{"vendor": "v"}]}, r"sources\.s\.tenants\[0\]: needs org_code"),
    ({"tenants": [{"org_code": "A"}, {"org_code": "A"}]}, r"tenants: duplicate org_code"),
    ({"char_encoding": "gbk2"}, r"char_encoding: unknown codec 'gbk2'"),
    ({"schema": "dbo; drop"}, r"sources\.s\.schema: 'dbo; drop' is not a plain identifier"),
    ({"colour": 1}, r"sources\.s: unknown keys \['colour'\]"),
    ({"primary": {"odbc": ODBC_RO.replace(";UID=etl;", ";UID=etl;PWD=x;"), "password_env": "P"}},
     r"sources\.s\.primary: give the password through password_env only"),
    ({"primary": {"server": "sql1"}}, r"server and database are required"),
    ({"primary": {"odbc": "Driver={ODBC Driver 18;Server=x"}}, r"unterminated"),
])
def test_invalid_sources_are_rejected_with_a_clear_message(over, message):
    with pytest.raises(SourceConfigError, match=message):
        parse_source("s", _mssql_raw(**over))


def test_server_form_is_mssql_only():
    with pytest.raises(SourceConfigError, match="server/database form is for mssql"):
        parse_source("pg", {"dialect": "postgresql", "primary": {"server": "x", "database": "d"},
                            "replicas": [{"odbc": "Driver=x;"}]})


def test_sources_file_needs_a_sources_mapping(tmp_path):
    p = tmp_path / "sources.yaml"
    p.write_text("source:\n  a: {}\n", encoding="utf-8")
    with pytest.raises(SourceConfigError, match="expected a top-level 'sources:' mapping"):
        load_sources(p)
