"""The sources file: which production databases to read, through which replicas, for which
tenants and tables, under which policies. Validated up front with specific errors, because
some bad values never produce an error later (FreeTDS segfaults on a bad ApplicationIntent).

```yaml
sources:
  district_his:
    dialect: mssql                 # mssql | postgresql | sqlite
    primary:   {odbc: "Driver={ODBC Driver 18 for SQL Server};Server=tcp:sql1,1433;Database=HIS;UID=etl;", password_env: HISX_SRC_PW}
    listener:  {server: "tcp:his-ag.example,1433", database: HIS, user: etl, password_env: HISX_SRC_PW}
    replicas:  [{name: sql2, odbc: "...;ApplicationIntent=ReadOnly;", password_env: HISX_SRC_PW}]
    char_encoding: gbk             # SQL_CHAR decoding (Chinese_PRC_CI_AS VARCHAR); NVARCHAR is UTF-16
    tenants:   [{org_code: "42502657200", vendor: vendor_a}]
    tables:    [registrations, charges]
    schema:    dbo                 # schema of the source tables (optional)
    policies:  {max_lag: 30, on_no_healthy_replica: wait, chunk_rows: 50000, max_readers: 2}
  demo:
    url: sqlite:///.hisx/source/demo.sqlite
    tenants: [{org_code: "42502657200", vendor: vendor_a}]
```
``max_lag`` is bytes of WAL for PostgreSQL and seconds for SQL Server.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from hisx.simulator import schema

DIALECTS = ("mssql", "postgresql", "sqlite")
POLICIES = ("wait", "primary", "fail")
#: The only values SQL Server drivers accept; anything else crashes FreeTDS (infra-notes §2).
APPLICATION_INTENTS = ("ReadOnly", "ReadWrite")
MSSQL_DRIVER = "ODBC Driver 18 for SQL Server"


class SourceConfigError(ValueError):
    """A sources file that cannot be used, with the path to the offending value."""


@dataclass(frozen=True)
class Endpoint:
    """One connectable database: an ODBC connection string (password from the environment)
    or a SQLAlchemy URL."""

    name: str
    odbc: str | None = None
    url: str | None = None
    password_env: str | None = None
    role: str = "replica"  # primary | replica | listener

    def connection_string(self) -> str:
        if self.odbc is None:
            raise SourceConfigError(f"endpoint {self.name!r} has no ODBC connection string")
        if not self.password_env:
            return self.odbc
        pw = os.environ.get(self.password_env)
        if pw is None:
            raise SourceConfigError(
                f"endpoint {self.name!r}: environment variable {self.password_env} is not set")
        return _set_keyword(self.odbc, "PWD", pw)


@dataclass(frozen=True)
class Tenant:
    org_code: str
    vendor: str | None = None


@dataclass(frozen=True)
class Policies:
    max_lag: float | None = None
    on_no_healthy_replica: str = "wait"
    chunk_rows: int = 50_000
    max_readers: int = 2
    wait_timeout_s: float = 300.0
    wait_poll_s: float = 1.0
    extraction_path: str = "auto"  # auto | arrow-odbc | pyodbc


@dataclass(frozen=True)
class SourceConfig:
    name: str
    dialect: str
    primary: Endpoint | None
    replicas: tuple[Endpoint, ...] = ()
    tenants: tuple[Tenant, ...] = ()
    tables: tuple[str, ...] = ()
    policies: Policies = field(default_factory=Policies)
    char_encoding: str | None = None
    url: str | None = None  # plain SQLAlchemy source (sqlite demo): no replicas
    db_schema: str | None = None  # schema of the source tables (e.g. dbo, his); None: default

    def table(self, name: str) -> sa.Table:
        """The source table (hisx.simulator.schema), qualified with ``db_schema`` if set."""
        if name not in self.tables:
            raise SourceConfigError(f"source {self.name!r} does not declare table {name!r}")
        base = schema.metadata.tables[name]
        if self.db_schema is None:
            return base
        md = _SCHEMA_METADATA.setdefault(self.db_schema, sa.MetaData())
        key = f"{self.db_schema}.{name}"
        return md.tables[key] if key in md.tables else base.to_metadata(md, schema=self.db_schema)

    def missing_secrets(self) -> list[str]:
        """Environment variables named by ``password_env`` that are not set."""
        eps = [e for e in (self.primary, *self.replicas) if e is not None]
        return sorted({e.password_env for e in eps if e.password_env and e.password_env not in os.environ})

    def require_secrets(self) -> None:
        """Raise before any driver call if a password variable is missing."""
        missing = self.missing_secrets()
        if missing:
            raise SourceConfigError(
                f"source {self.name!r}: password environment variable(s) not set: {', '.join(missing)}")


_SCHEMA_METADATA: dict[str, sa.MetaData] = {}


def mssql_odbc_connection_string(
    server: str, database: str, user: str | None = None, password: str | None = None, *,
    application_intent: str = "ReadOnly", multi_subnet_failover: bool = True,
    driver: str = MSSQL_DRIVER, encrypt: bool = True, trust_server_certificate: bool = False,
    timeout_s: int = 15,
) -> str:
    """ODBC Driver 18 connection string for an AG listener (read intent routes the session
    to a readable secondary; MultiSubnetFailover makes reconnects after failover fast)."""
    if application_intent not in APPLICATION_INTENTS:
        raise SourceConfigError(
            f"ApplicationIntent must be one of {APPLICATION_INTENTS}, got {application_intent!r}")
    if not server or not database:
        raise SourceConfigError("server and database are required (read-only routing needs Database=)")
    parts = [f"Driver={_braced(driver, always=True)}", f"Server={_braced(server)}",
             f"Database={_braced(database)}"]
    if user:
        parts.append(f"UID={_braced(user)}")
        if password is not None:  # None: filled in from password_env at connect time
            parts.append(f"PWD={_braced(password)}")
    else:
        parts.append("Trusted_Connection=Yes")
    parts += [
        f"ApplicationIntent={application_intent}",
        f"MultiSubnetFailover={'Yes' if multi_subnet_failover else 'No'}",
        f"Encrypt={'yes' if encrypt else 'no'}",
        f"TrustServerCertificate={'yes' if trust_server_certificate else 'no'}",
        f"Connection Timeout={int(timeout_s)}",
    ]
    return ";".join(parts) + ";"


def _braced(v: str, *, always: bool = False) -> str:
    """An ODBC attribute value, quoted when it must be: ``{...}`` with ``}`` doubled (the
    only escape ODBC defines), so a password like ``a;b}c`` stays one value."""
    if always or any(ch in v for ch in ";{}=") or v != v.strip():
        return "{" + v.replace("}", "}}") + "}"
    return v


def split_odbc(conn: str) -> list[tuple[str, str]]:
    """``(keyword, raw value)`` pairs of an ODBC connection string, braces respected: a
    ``;`` inside ``{...}`` does not end the value and ``}}`` is an escaped ``}``. Raises
    :class:`SourceConfigError` on an unterminated brace."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(conn)
    while i < n:
        eq = conn.find("=", i)
        if eq < 0:
            if conn[i:].strip(" ;"):
                raise SourceConfigError(f"ODBC connection string: {conn[i:]!r} has no '='")
            break
        key = conn[i:eq].strip(" ;")
        j = eq + 1
        if conn[j:j + 1] == "{":
            k = j + 1
            while True:
                close = conn.find("}", k)
                if close < 0:
                    raise SourceConfigError(f"ODBC connection string: unterminated '{{' in {key}=")
                if conn[close + 1:close + 2] == "}":
                    k = close + 2
                    continue
                break
            out.append((key, conn[j:close + 1]))
            i = conn.find(";", close + 1)
            i = n if i < 0 else i + 1
        else:
            end = conn.find(";", j)
            end = n if end < 0 else end
            out.append((key, conn[j:end].strip()))
            i = end + 1
    return out


def unbrace(v: str) -> str:
    return v[1:-1].replace("}}", "}") if v.startswith("{") and v.endswith("}") else v


def _set_keyword(conn: str, key: str, value: str) -> str:
    kept = [f"{k}={v}" for k, v in split_odbc(conn) if k.upper() != key.upper()]
    return ";".join([*kept, f"{key}={_braced(value)}"]) + ";"


def odbc_keywords(conn: str) -> dict[str, str]:
    """Keyword -> (unbraced) value of an ODBC connection string, keywords upper-cased."""
    return {k.upper(): unbrace(v) for k, v in split_odbc(conn)}


def _check_intent(where: str, conn: str) -> None:
    intent = odbc_keywords(conn).get("APPLICATIONINTENT")
    if intent is not None and intent not in APPLICATION_INTENTS:
        raise SourceConfigError(
            f"{where}: ApplicationIntent={intent!r} is invalid (allowed: {', '.join(APPLICATION_INTENTS)}); "
            "FreeTDS would crash the process on it")


def _endpoint(where: str, raw: Any, role: str, dialect: str) -> Endpoint:
    if not isinstance(raw, dict):
        raise SourceConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    unknown = set(raw) - {"name", "odbc", "url", "password_env", "server", "database", "user",
                          "application_intent", "trust_server_certificate"}
    if unknown:
        raise SourceConfigError(f"{where}: unknown keys {sorted(unknown)}")
    odbc = raw.get("odbc")
    if odbc is None and "server" in raw:
        if dialect != "mssql":
            raise SourceConfigError(f"{where}: server/database form is for mssql; give odbc: for {dialect}")
        intent = raw.get("application_intent", "ReadWrite" if role == "primary" else "ReadOnly")
        if intent not in APPLICATION_INTENTS:
            raise SourceConfigError(
                f"{where}.application_intent: {intent!r} is invalid (allowed: {', '.join(APPLICATION_INTENTS)})")
        odbc = mssql_odbc_connection_string(
            raw["server"], raw.get("database", ""), raw.get("user"), None,
            application_intent=intent,
            trust_server_certificate=bool(raw.get("trust_server_certificate", False)))
    if odbc is None and raw.get("url") is None:
        raise SourceConfigError(f"{where}: needs odbc:, url: or (mssql) server:/database:")
    if odbc is not None:
        _check_intent(where, odbc)
        if "PWD" in odbc_keywords(odbc) and raw.get("password_env") and dialect == "mssql":
            raise SourceConfigError(f"{where}: give the password through password_env only")
    return Endpoint(name=str(raw.get("name", role)), odbc=odbc, url=raw.get("url"),
                    password_env=raw.get("password_env"), role=role)


def _policies(where: str, raw: Any) -> Policies:
    raw = raw or {}
    if not isinstance(raw, dict):
        raise SourceConfigError(f"{where}: expected a mapping")
    unknown = set(raw) - set(Policies.__dataclass_fields__)
    if unknown:
        raise SourceConfigError(f"{where}: unknown policies {sorted(unknown)}")
    p = Policies(**raw)
    if p.on_no_healthy_replica not in POLICIES:
        raise SourceConfigError(
            f"{where}.on_no_healthy_replica: {p.on_no_healthy_replica!r} is not one of {POLICIES}")
    if not isinstance(p.chunk_rows, int) or p.chunk_rows < 1:
        raise SourceConfigError(f"{where}.chunk_rows: must be a positive integer, got {p.chunk_rows!r}")
    if not isinstance(p.max_readers, int) or p.max_readers < 1:
        raise SourceConfigError(f"{where}.max_readers: must be a positive integer, got {p.max_readers!r}")
    if p.max_lag is not None and (not isinstance(p.max_lag, int | float) or p.max_lag < 0):
        raise SourceConfigError(f"{where}.max_lag: must be a non-negative number, got {p.max_lag!r}")
    for k in ("wait_timeout_s", "wait_poll_s"):
        v = getattr(p, k)
        if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
            raise SourceConfigError(f"{where}.{k}: must be a positive number of seconds, got {v!r}")
    if p.extraction_path not in ("auto", "arrow-odbc", "pyodbc"):
        raise SourceConfigError(f"{where}.extraction_path: {p.extraction_path!r} is not auto|arrow-odbc|pyodbc")
    return p


def parse_source(name: str, raw: Any) -> SourceConfig:
    where = f"sources.{name}"
    if not isinstance(raw, dict):
        raise SourceConfigError(f"{where}: expected a mapping")
    known = {"dialect", "primary", "replicas", "listener", "tenants", "tables", "policies",
             "char_encoding", "url", "schema"}
    if set(raw) - known:
        raise SourceConfigError(f"{where}: unknown keys {sorted(set(raw) - known)}")
    tenants = []
    for i, t in enumerate(raw.get("tenants") or []):
        if not isinstance(t, dict) or not t.get("org_code"):
            raise SourceConfigError(f"{where}.tenants[{i}]: needs org_code")
        tenants.append(Tenant(str(t["org_code"]), t.get("vendor")))
    if len({t.org_code for t in tenants}) != len(tenants):
        raise SourceConfigError(f"{where}.tenants: duplicate org_code")
    tables = tuple(raw.get("tables") or [t.name for t in schema.TABLES])
    for t in tables:
        if t not in schema.metadata.tables:
            raise SourceConfigError(f"{where}.tables: unknown table {t!r}")
    policies = _policies(f"{where}.policies", raw.get("policies"))
    enc = raw.get("char_encoding")
    if enc is not None:
        try:
            "中".encode(enc)
        except LookupError:
            raise SourceConfigError(f"{where}.char_encoding: unknown codec {enc!r}") from None
    db_schema = raw.get("schema")
    if db_schema is not None and not (isinstance(db_schema, str) and db_schema.isidentifier()):
        raise SourceConfigError(f"{where}.schema: {db_schema!r} is not a plain identifier")
    if "url" in raw:
        if raw.get("replicas") or raw.get("listener") or raw.get("primary"):
            raise SourceConfigError(f"{where}: a url: source has no primary/replicas/listener")
        url = str(raw["url"])
        dialect = url.split(":", 1)[0].split("+", 1)[0]
        if dialect not in DIALECTS:
            raise SourceConfigError(f"{where}.url: unsupported dialect {dialect!r}")
        return SourceConfig(name, dialect, None, (), tuple(tenants), tables, policies, enc, url,
                            db_schema)
    dialect = raw.get("dialect")
    if dialect not in DIALECTS:
        raise SourceConfigError(f"{where}.dialect: {dialect!r} is not one of {DIALECTS}")
    if "primary" not in raw:
        raise SourceConfigError(f"{where}: primary: is required")
    primary = _endpoint(f"{where}.primary", raw["primary"], "primary", dialect)
    replicas = [_endpoint(f"{where}.replicas[{i}]", r, "replica", dialect)
                for i, r in enumerate(raw.get("replicas") or [])]
    if raw.get("listener"):
        replicas.append(_endpoint(f"{where}.listener", raw["listener"], "listener", dialect))
    if not replicas:
        raise SourceConfigError(f"{where}: declare at least one replica or a listener with read intent")
    if dialect == "mssql":
        for r in replicas:
            if odbc_keywords(r.odbc or "").get("APPLICATIONINTENT") != "ReadOnly":
                raise SourceConfigError(
                    f"{where}: replica {r.name!r} must connect with ApplicationIntent=ReadOnly")
    return SourceConfig(name, dialect, primary, tuple(replicas), tuple(tenants), tables,
                        policies, enc, None, db_schema)


def load_sources(src: str | Path | dict) -> dict[str, SourceConfig]:
    """Parse and validate a sources file (path or already-loaded mapping)."""
    raw = src if isinstance(src, dict) else yaml.safe_load(Path(src).read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or not isinstance(raw.get("sources"), dict) or not raw["sources"]:
        raise SourceConfigError("sources file: expected a top-level 'sources:' mapping")
    return {name: parse_source(name, body) for name, body in raw["sources"].items()}
