"""Authentication, authorization and rate limiting, shared by REST, SOAP and named queries.

* 401 ``missing_key`` / ``invalid_key`` — no key, an unknown, wrong or revoked key.
* 403 ``scope_forbidden`` — the key lacks the scope the operation needs.
* 403 ``tenant_forbidden`` — the key's tenant does not own the data asked for (a center key
  may read only its own center; the region key ``*`` with ``region:read`` may read any).
* 403 ``not_contracted`` — person-level history without an active family-doctor contract.
* 429 ``rate_limited`` — the key's token bucket is empty (``Retry-After`` given).

Keys are presented as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

A successful verification is remembered for :data:`KEY_CACHE_SECONDS` (:class:`KeyCache`), so
a request does not touch the key store: a key revoked from another process (``hisx keys
revoke``) stops working within that bound; one revoked through the server's own store, at once.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field

from hisx.api.keys import ApiKey, KeyStore


class ApiError(Exception):
    """A denial or a bad request, with the HTTP status and a stable error code."""

    def __init__(self, status: int, code: str, message: str, *,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def denied(self) -> bool:
        return self.status in (401, 403, 429)

    def body(self) -> dict:
        return {"error": {"status": self.status, "code": self.code, "message": self.message}}


@dataclass
class _Bucket:
    tokens: float
    stamp: float


@dataclass
class RateLimiter:
    """Token bucket per key, in process (one server process; each worker has its own)."""

    buckets: dict[str, _Bucket] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, key: ApiKey) -> None:
        now = time.monotonic()
        with self.lock:
            b = self.buckets.get(key.key_id)
            if b is None:
                b = self.buckets[key.key_id] = _Bucket(key.burst, now)
            b.tokens = min(key.burst, b.tokens + (now - b.stamp) * key.rate)
            b.stamp = now
            if b.tokens >= 1.0:
                b.tokens -= 1.0
                return
            wait = (1.0 - b.tokens) / key.rate
        raise ApiError(429, "rate_limited",
                       f"rate limit of {key.rate:g}/s (burst {key.burst:g}) exceeded for key "
                       f"{key.key_id}", retry_after=wait)


#: How long a verified key is trusted without asking the key store again (revocation bound).
KEY_CACHE_SECONDS = 2.0


class KeyCache:
    """Verified keys by SHA-256 of the presented key, each for ``ttl`` seconds. Only
    successful verifications are kept (at most ``max_entries``); a revoke through ``store``
    empties it."""

    def __init__(self, store: KeyStore, ttl: float = KEY_CACHE_SECONDS,
                 max_entries: int = 10_000) -> None:
        self.store = store
        self.ttl = ttl
        self.max_entries = max_entries
        self._seen: dict[str, tuple[ApiKey, float]] = {}
        self._revocations = store.revocations

    @staticmethod
    def _digest(presented: str) -> str:
        return hashlib.sha256(presented.encode("utf-8", "surrogatepass")).hexdigest()

    def get(self, presented: str) -> ApiKey | None:
        """The key, if verified less than ``ttl`` seconds ago; else None (ask :meth:`verify`)."""
        if self.store.revocations != self._revocations:
            self._revocations = self.store.revocations
            self._seen = {}
        hit = self._seen.get(self._digest(presented))
        if hit is not None and time.monotonic() - hit[1] < self.ttl:
            return hit[0]
        return None

    def verify(self, presented: str) -> ApiKey | None:
        """Ask the key store (blocking: SQLite) and remember a success."""
        revocations = self.store.revocations
        key = self.store.verify(presented)
        if key is not None and revocations == self.store.revocations:
            if len(self._seen) >= self.max_entries:
                self._seen = {}
            self._seen[self._digest(presented)] = (key, time.monotonic())
        return key


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    if x_api_key:
        return x_api_key.strip()
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


def admit(limiter: RateLimiter, presented: str | None, key: ApiKey | None) -> ApiKey:
    """401 without a key or with one that did not verify (``key`` None), 429 over the rate."""
    if not presented:
        raise ApiError(401, "missing_key", "an API key is required: 'Authorization: Bearer "
                                           "<key>' or 'X-API-Key: <key>'")
    if key is None:
        raise ApiError(401, "invalid_key", "the API key is unknown, wrong or revoked")
    limiter.take(key)
    return key


def authenticate(keys: KeyCache, limiter: RateLimiter, presented: str | None) -> ApiKey:
    key = (keys.get(presented) or keys.verify(presented)) if presented else None
    return admit(limiter, presented, key)


def require_scope(key: ApiKey, scope: str) -> None:
    if scope not in key.scopes:
        raise ApiError(403, "scope_forbidden",
                       f"key {key.key_id} lacks scope {scope!r} (has {sorted(key.scopes)})")


def read_scope(key: ApiKey) -> None:
    """Tenant data needs center:read (center keys) or region:read (the region key)."""
    require_scope(key, "region:read" if key.is_region else "center:read")


def resolve_center(key: ApiKey, center: str | None) -> str | None:
    """The tenant a read is bound to: a center key reads its own center only; the region key
    reads the center asked for, or every center (``None``)."""
    read_scope(key)
    if key.is_region:
        return center or None
    if center is not None and center != key.tenant:
        raise ApiError(403, "tenant_forbidden",
                       f"key {key.key_id} belongs to center {key.tenant} and may not read "
                       f"center {center}")
    return key.tenant
