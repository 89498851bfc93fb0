"""API keys and the audit trail, in a small SQLite file under ``$HISX_HOME/api/``.

Why SQLite and not the warehouse: the API writes on every person-level read and every
denial, while the embedded DuckDB warehouse allows one writer process (the pipeline) and the
API opens it read-only; PostgreSQL warehouses are often read through a replica. A separate
file keeps those writes off the warehouse, keeps key hashes out of what analysts can query,
and works the same on every warehouse backend. WAL mode lets ``hisx audit`` read while the
server appends.

A key is ``hisx_<key_id>_<secret>``: ``key_id`` (public, 12 hex) finds the row, the secret
(32 random bytes, url-safe) is stored only as SHA-256 and compared in constant time. The
plain key is shown once, at creation. Keys are revoked, never deleted (audit rows refer to
them). The audit table is append-only: SQLite triggers abort any UPDATE or DELETE.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCOPES = ("center:read", "region:read", "person:read", "admin")
REGION = "*"
KEY_PREFIX = "hisx_"

DDL = (
    """CREATE TABLE IF NOT EXISTS api_keys (
        key_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, scopes TEXT NOT NULL,
        secret_sha256 TEXT NOT NULL, label TEXT, rate REAL NOT NULL, burst REAL NOT NULL,
        created_at TEXT NOT NULL, revoked_at TEXT)""",
    """CREATE TABLE IF NOT EXISTS audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, key_id TEXT, tenant TEXT,
        interface TEXT NOT NULL, endpoint TEXT NOT NULL, params TEXT NOT NULL,
        outcome TEXT NOT NULL, status INTEGER NOT NULL, reason TEXT,
        person_keys TEXT NOT NULL, record_keys TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS audit_tenant_at ON audit (tenant, at)",
    """CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
       BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
       BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END""",
)


def default_path() -> Path:
    """``HISX_API_DB`` or ``$HISX_HOME/api/keys.sqlite``."""
    from hisx.config import hisx_home

    env = os.environ.get("HISX_API_DB")
    return Path(env) if env else hisx_home() / "api" / "keys.sqlite"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    tenant: str
    scopes: frozenset[str]
    label: str | None
    rate: float
    burst: float
    created_at: str
    revoked_at: str | None = None

    @property
    def is_region(self) -> bool:
        return self.tenant == REGION


class KeyStore:
    """Keys and audit rows; one SQLite connection guarded by a lock (calls are sub-ms)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self.revocations = 0  # revokes through this store: verification caches drop at once
        with self._lock:
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA synchronous=NORMAL")
            self._con.execute("PRAGMA busy_timeout=5000")
            for stmt in DDL:
                self._con.execute(stmt)
        with contextlib.suppress(OSError):  # not our file: leave its mode
            self.path.chmod(0o600)

    def close(self) -> None:
        with self._lock:
            self._con.close()

    # -- keys ---------------------------------------------------------------------------
    def create(self, tenant: str, scopes: Iterable[str], *, label: str | None = None,
               rate: float = 50.0, burst: float = 100.0) -> tuple[str, ApiKey]:
        """A new key: returns (plain key shown once, record)."""
        scopes = sorted(set(scopes))
        bad = [s for s in scopes if s not in SCOPES]
        if bad or not scopes:
            raise ValueError(f"unknown or no scopes {bad or scopes}; choose from {SCOPES}")
        if tenant != REGION and not tenant.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"not a tenant code: {tenant!r} (a center code or '*')")
        if "region:read" in scopes and tenant != REGION:
            raise ValueError("region:read needs tenant '*' (the region)")
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        rec = ApiKey(key_id, tenant, frozenset(scopes), label, float(rate), float(burst), _now())
        with self._lock:
            self._con.execute(
                "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                (key_id, tenant, " ".join(scopes), _sha256(secret), label, rec.rate,
                 rec.burst, rec.created_at))
        return f"{KEY_PREFIX}{key_id}_{secret}", rec

    def verify(self, presented: str) -> ApiKey | None:
        """The active key matching ``presented``, or None (constant-time hash compare)."""
        if not presented.startswith(KEY_PREFIX) or len(presented) > 200:
            return None
        key_id, _, secret = presented[len(KEY_PREFIX):].partition("_")
        if not key_id or not secret:
            return None
        with self._lock:
            row = self._con.execute(
                "SELECT key_id, tenant, scopes, label, rate, burst, created_at, revoked_at, "
                "secret_sha256 FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()
        expected = row[8] if row else _sha256("no such key")
        ok = hmac.compare_digest(_sha256(secret), expected)
        if not row or not ok or row[7] is not None:
            return None
        return ApiKey(row[0], row[1], frozenset(row[2].split()), row[3], row[4], row[5],
                      row[6], row[7])

    def list(self) -> list[ApiKey]:
        with self._lock:
            rows = self._con.execute(
                "SELECT key_id, tenant, scopes, label, rate, burst, created_at, revoked_at "
                "FROM api_keys ORDER BY created_at").fetchall()
        return [ApiKey(r[0], r[1], frozenset(r[2].split()), r[3], r[4], r[5], r[6], r[7])
                for r in rows]

    def revoke(self, key_id: str) -> bool:
        with self._lock:
            cur = self._con.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                (_now(), key_id))
            if cur.rowcount == 1:
                self.revocations += 1
        return cur.rowcount == 1

    # -- audit --------------------------------------------------------------------------
    def audit(self, *, key: ApiKey | None, interface: str, endpoint: str,
              params: dict[str, Any], outcome: str, status: int, reason: str | None = None,
              person_keys: Sequence[str] = (), record_keys: Sequence[Any] = ()) -> None:
        """Append one audit row (never updated or deleted)."""
        row = (_now(), key.key_id if key else None, key.tenant if key else None, interface,
               endpoint, json.dumps(params, ensure_ascii=False, default=str, sort_keys=True),
               outcome, int(status), reason,
               json.dumps(sorted(set(person_keys))), json.dumps(list(record_keys), default=str))
        with self._lock:
            self._con.execute(
                "INSERT INTO audit (at, key_id, tenant, interface, endpoint, params, outcome, "
                "status, reason, person_keys, record_keys) VALUES (?,?,?,?,?,?,?,?,?,?,?)", row)

    def audit_rows(self, *, tenant: str | None = None, person: str | None = None,
                   since: str | None = None, outcome: str | None = None,
                   limit: int = 1000) -> list[dict[str, Any]]:
        """Audit rows, newest first; ``person`` matches a returned person key or a parameter."""
        where, args = [], []
        if tenant:
            where.append("tenant = ?")
            args.append(tenant)
        if since:
            where.append("at >= ?")
            args.append(since)
        if outcome:
            where.append("outcome = ?")
            args.append(outcome)
        if person:
            where.append("(instr(person_keys, ?) > 0 OR instr(params, ?) > 0)")
            args += [json.dumps(person), person]
        sql = ("SELECT seq, at, key_id, tenant, interface, endpoint, params, outcome, status, "
               "reason, person_keys, record_keys FROM audit"
               + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY seq DESC LIMIT ?")
        with self._lock:
            cur = self._con.execute(sql, (*args, int(limit)))
            cols = [d[0] for d in cur.description]
            rows = cur.fetchall()
        out = []
        for r in rows:
            d = dict(zip(cols, r, strict=True))
            for k in ("params", "person_keys", "record_keys"):
                d[k] = json.loads(d[k])
            out.append(d)
        return out
