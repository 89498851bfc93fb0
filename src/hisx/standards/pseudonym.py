"""Pseudonymization: keyed person keys and masking, so std tables hold no plain identifiers.

``person_key`` = HMAC-SHA256(key, normalized national ID) as hex. The normalized ID is the
18-digit GB 11643 form (a legacy 15-digit number is upgraded, so both forms of one person give
one key). Without a usable ID the key falls back to HMAC of name + birth date + gender and is
flagged ``weak``. The key comes from ``HISX_PSEUDO_KEY`` (hex if it parses as hex of >= 16 bytes,
else UTF-8 text); ``HISX_PSEUDO_KEY_ID`` names it (default: ``k`` + first 8 hex of SHA-256(key)).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from hisx.standards.validators import CHECK_BYTES, fixed_width_bytes, real_dates

KEY_ENV = "HISX_PSEUDO_KEY"
KEY_ID_ENV = "HISX_PSEUDO_KEY_ID"
STRONG, WEAK = "strong", "weak"

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_HEX_RE = re.compile(r"^(?:[0-9a-fA-F]{2}){16,}$")
_ID18_RE = re.compile(r"^\d{17}[\dX]$", re.ASCII)


class PseudonymKeyError(RuntimeError):
    """The pseudonymization key is missing or unusable."""


@dataclass(frozen=True)
class PseudoKey:
    """A secret HMAC key and its public id (stored beside every key it produced)."""

    secret: bytes
    key_id: str

    def __repr__(self) -> str:  # never print the secret
        return f"PseudoKey(key_id={self.key_id!r})"


def key_from_text(text: str, key_id: str | None = None) -> PseudoKey:
    """Build a key from its env-style text form (hex or plain text)."""
    text = text.strip()
    if not text:
        raise PseudonymKeyError(f"{KEY_ENV} is empty")
    secret = bytes.fromhex(text) if _HEX_RE.match(text) else text.encode("utf-8")
    return PseudoKey(secret, key_id or "k" + hashlib.sha256(secret).hexdigest()[:8])


def key_from_env(environ: dict[str, str] | None = None) -> PseudoKey:
    """The key from ``HISX_PSEUDO_KEY`` / ``HISX_PSEUDO_KEY_ID``; clear error when unset."""
    env = os.environ if environ is None else environ
    text = env.get(KEY_ENV)
    if not text:
        raise PseudonymKeyError(
            f"{KEY_ENV} is not set: export a secret (hex or text) before standardizing persons"
        )
    return key_from_text(text, env.get(KEY_ID_ENV) or None)


def check_char(first17: str) -> str:
    """GB 11643 ISO 7064 MOD 11-2 check character for 17 digits."""
    s = sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK[s % 11]


def normalize_id(raw: object) -> str | None:
    """NFKC, strip, remove inner spaces, upper-case x; 15-digit legacy -> 18-digit form."""
    if raw is None or not isinstance(raw, str | int) or isinstance(raw, bool):
        return None
    s = unicodedata.normalize("NFKC", str(raw)).strip().replace(" ", "").upper()
    if len(s) == 15 and s.isdigit() and s.isascii():
        first17 = s[:6] + "19" + s[6:]
        return first17 + check_char(first17)
    return s or None


def hmac_hex(key: PseudoKey, message: str) -> str:
    """HMAC-SHA256 of ``message`` (hex), RFC 2104 from SHA-256 states keyed once per key and
    copied per message: 1.7x faster than copying an ``hmac.HMAC`` (whose Python wrapper
    copies and finalizes two hash objects anyway)."""
    inner, outer = _keyed(key.secret)
    i = inner.copy()
    i.update(message.encode("utf-8"))
    o = outer.copy()
    o.update(i.digest())
    return o.hexdigest()


@functools.lru_cache(maxsize=8)
def _keyed(secret: bytes) -> tuple[Any, Any]:
    """SHA-256 states after the key XOR ipad and XOR opad blocks (RFC 2104)."""
    ipad, opad = _pads(secret)
    return hashlib.sha256(ipad), hashlib.sha256(opad)


def valid_id(id_no: str | None) -> bool:
    """A normalized 18-character GB 11643 number: format, real birth date, check character."""
    if not id_no or not _ID18_RE.match(id_no):
        return False
    try:
        date(int(id_no[6:10]), int(id_no[10:12]), int(id_no[12:14]))
    except ValueError:
        return False
    return check_char(id_no[:17]) == id_no[17]


def _iso_date(v: object) -> str:
    """ISO date of a birth date as recorded; a value that is no representable date (text, a
    year pandas parses but Python's ``date`` cannot hold, e.g. ``0000-01-01``) keeps its text."""
    if v is None or v is pd.NaT or (isinstance(v, float) and v != v):
        return ""
    try:
        if isinstance(v, datetime | pd.Timestamp):
            return v.date().isoformat()
        if isinstance(v, date):
            return v.isoformat()
        ts = pd.Timestamp(unicodedata.normalize("NFKC", str(v)).strip())
        return "" if ts is pd.NaT else ts.date().isoformat()
    except (ValueError, TypeError, OverflowError, NotImplementedError):
        return str(v)


def _text(v: object) -> str:
    if v is None or (isinstance(v, float) and v != v) or v is pd.NA:
        return ""
    return unicodedata.normalize("NFKC", str(v)).strip().casefold()


def person_key(key: PseudoKey, id_no: object, name: object = None, birth_date: object = None,
               gender: object = None) -> tuple[str, str]:
    """(person_key, strength) from raw source values.

    A valid GB 11643 number (after :func:`normalize_id`) gives a ``strong`` key whatever the
    document type says (a 户口簿 carries the same number); otherwise the key is ``weak``, from
    NFKC-normalized name, ISO birth date and the gender *as recorded* (so every caller that
    reads the same source row gets the same key).
    """
    norm = normalize_id(id_no)
    if valid_id(norm):
        return hmac_hex(key, "id:" + str(norm)), STRONG
    return hmac_hex(key, _weak_message(name, birth_date, gender)), WEAK


def _weak_message(name: object, birth_date: object, gender: object) -> str:
    """What a weak key is the HMAC of: normalized name, ISO birth date, gender as recorded."""
    return "|".join(("weak", _text(name), _iso_date(birth_date), _text(gender)))


def person_keys_strength(key: PseudoKey, id_nos: Iterable[object], names: Iterable[object],
                         birth_dates: Iterable[object], genders: Iterable[object]
                         ) -> tuple[list[str], list[str]]:
    """Column-wise :func:`person_key`: (keys, strengths). The numbers are normalized with
    Arrow (:func:`normalize_ids`) and the strong keys' HMACs computed by DuckDB
    (:func:`hmac_hex_many`); only weak keys (no valid number) are made row by row."""
    ids = _listed(id_nos)
    return keys_of_normalized(key, normalized_ids(ids), names, birth_dates, genders)


def normalized_ids(values: list[object]) -> pa.Array:
    """:func:`normalize_id` of every value as an Arrow array: :func:`normalize_ids` for
    text, value by value otherwise."""
    norm = normalize_ids(values)
    if norm is None:  # values that are not text
        norm = pa.array([normalize_id(x) for x in values], pa.string())
    return norm


def keys_of_normalized(key: PseudoKey, norm: pa.Array, names: Iterable[object],
                       birth_dates: Iterable[object], genders: Iterable[object]
                       ) -> tuple[list[str], list[str]]:
    """:func:`person_keys_strength` of numbers already normalized (:func:`normalized_ids`),
    for a caller that needs them for its masks too."""
    names_, births, genders_ = (_listed(c) for c in (names, birth_dates, genders))
    strong_np = valid_ids(norm)
    keys: list[str] = [""] * len(norm)
    if strong_np.any():
        at = np.flatnonzero(strong_np)
        msgs = pc.binary_join_element_wise("id:", pc.take(norm, pa.array(at)), "")
        for i, k in zip(at.tolist(), hmac_hex_many(key, msgs).to_pylist(), strict=True):
            keys[i] = k
    for i in np.flatnonzero(~strong_np).tolist():
        keys[i] = hmac_hex(key, _weak_message(names_[i], births[i], genders_[i]))
    return keys, [STRONG if ok else WEAK for ok in strong_np.tolist()]


_HMAC_SQL = "SELECT sha256($o || unhex(sha256($i || encode(m)))) AS h FROM hmac_in"
_hmac_engine = threading.local()


def hmac_hex_many(key: PseudoKey, messages: pa.Array) -> pa.Array:
    """:func:`hmac_hex` of every message (null for null), by DuckDB's SHA-256 over the
    RFC 2104 pads in an in-memory engine per thread: no Python per row (the person dataset's
    two HMACs per row were a quarter of its standardization)."""
    if len(messages) == 0:
        return pa.array([], pa.string())
    con = getattr(_hmac_engine, "con", None)
    if con is None:
        import duckdb

        con = _hmac_engine.con = duckdb.connect(":memory:")
    ipad, opad = _pads(key.secret)
    con.register("hmac_in", pa.table({"m": pc.cast(messages, pa.string())}))
    try:
        out = con.sql(_HMAC_SQL, params={"i": ipad, "o": opad}).to_arrow_table()
    finally:
        con.unregister("hmac_in")
    return pc.cast(out.column("h").combine_chunks(), pa.string())


@functools.lru_cache(maxsize=8)
def _pads(secret: bytes) -> tuple[bytes, bytes]:
    """The key XOR ipad and XOR opad blocks (RFC 2104)."""
    block = hashlib.sha256().block_size
    k = hashlib.sha256(secret).digest() if len(secret) > block else secret
    k = k.ljust(block, b"\0")
    return bytes(x ^ 0x36 for x in k), bytes(x ^ 0x5C for x in k)


def _ascii_rows(values: list[object] | pa.Array) -> tuple[pa.Array, np.ndarray] | None:
    """The values as an Arrow string array and which of them are ASCII text, or None when
    some value is neither text nor null (the per-value path takes those)."""
    if isinstance(values, pa.Array):
        arr = pc.cast(values, pa.string())  # int32 offsets, as fixed_width_bytes reads them
    else:
        if not all(x is None or type(x) is str for x in values):
            return None
        try:
            arr = pa.array(values, pa.string())
        except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeError):
            return None  # e.g. lone surrogates
    return arr, pc.fill_null(pc.string_is_ascii(arr), False).to_numpy(zero_copy_only=False)


def by_ascii(values: list[object] | pa.Array, fast, slow) -> pa.Array | None:
    """``slow`` (a per-value function) of every value, computed by ``fast`` (Arrow kernels
    on an array of ASCII strings) where the value is ASCII text; non-ASCII values take
    ``slow`` itself, nulls stay null. None when a value is not text (the caller's per-value
    path then)."""
    got = _ascii_rows(values)
    if got is None:
        return None
    arr, ascii_ = got
    if ascii_.all():
        return fast(arr)
    out = pa.nulls(len(arr), pa.string())
    if ascii_.any():
        at = pa.array(np.flatnonzero(ascii_))
        out = pc.replace_with_mask(out, pa.array(ascii_), fast(pc.take(arr, at)))
    other = ~ascii_ & arr.is_valid().to_numpy(zero_copy_only=False)
    if other.any():
        vals = [slow(x) for x in pc.filter(arr, pa.array(other)).to_pylist()]
        out = pc.replace_with_mask(out, pa.array(other), pa.array(vals, pa.string()))
    return out


_CHECK_CHARS = np.array(list(_CHECK), dtype=object)


def _normalize_ascii_ids(arr: pa.Array) -> pa.Array:
    """:func:`normalize_id` of ASCII numbers: strip, no spaces, upper case, a 15-digit legacy
    number upgraded to its 18-digit form; empty -> null."""
    s = pc.ascii_upper(pc.replace_substring(pc.utf8_trim_whitespace(arr), " ", ""))
    legacy = pc.fill_null(pc.match_substring_regex(s, r"^[0-9]{15}$"), False)
    if pc.any(legacy).as_py():
        old = pc.filter(s, legacy)
        first17 = pc.binary_join_element_wise(pc.utf8_slice_codeunits(old, 0, 6), "19",
                                              pc.utf8_slice_codeunits(old, 6), "")
        digits = fixed_width_bytes(first17, 17).astype(np.int64) - 48
        check = _CHECK_CHARS[(digits @ np.array(_WEIGHTS)) % 11]
        s = pc.replace_with_mask(s, legacy, pc.binary_join_element_wise(
            first17, pa.array(check, pa.string()), ""))
    return pc.if_else(pc.equal(s, ""), pa.scalar(None, pa.string()), s)


def normalize_ids(values: list[object] | pa.Array) -> pa.Array | None:
    """:func:`normalize_id` of every value as an Arrow array (Arrow kernels for ASCII text),
    or None when some value is not text."""
    return by_ascii(values, _normalize_ascii_ids, normalize_id)


def _stars(n: pa.Array) -> pa.Array:
    return pc.binary_repeat("*", pc.max_element_wise(n, 0))


def _mask_ascii_ids(arr: pa.Array) -> pa.Array:
    n = pc.utf8_length(arr)
    card = pc.binary_join_element_wise(pc.utf8_slice_codeunits(arr, 0, 6),
                                       _stars(pc.subtract(n, 10)),
                                       pc.utf8_slice_codeunits(arr, -4), "")
    other = pc.binary_join_element_wise(pc.utf8_slice_codeunits(arr, 0, 2),
                                        _stars(pc.subtract(n, 4)),
                                        pc.utf8_slice_codeunits(arr, -2), "")
    out = pc.if_else(pc.is_in(n, pa.array([15, 18], n.type)), card,
                     pc.if_else(pc.less_equal(n, 6), _stars(n), other))
    return pc.if_else(pc.equal(n, 0), pa.scalar(None, pa.string()), out)


def mask_ids(values: list[object] | pa.Array) -> pa.Array | None:
    """:func:`mask_id` of every value (Arrow kernels for ASCII text), or None when some value
    is not text."""
    return by_ascii(values, _mask_ascii_ids, mask_id)


def _mask_ascii_phones(arr: pa.Array) -> pa.Array:
    n = pc.utf8_length(arr)
    long_ = pc.binary_join_element_wise(pc.utf8_slice_codeunits(arr, 0, 3),
                                        _stars(pc.min_element_wise(pc.subtract(n, 7), 13)),
                                        pc.utf8_slice_codeunits(arr, -4), "")
    short = pc.binary_join_element_wise(_stars(pc.subtract(n, 2)),
                                        pc.utf8_slice_codeunits(arr, -2), "")
    out = pc.if_else(pc.greater_equal(n, 11), long_, short)
    return pc.if_else(pc.equal(n, 0), pa.scalar(None, pa.string()), out)


def mask_phones(values: list[object] | pa.Array) -> pa.Array | None:
    """:func:`mask_phone` of every value (Arrow kernels for ASCII text), or None when some
    value is not text."""
    return by_ascii(values, _mask_ascii_phones, mask_phone)


def mask_names(values: list[object] | pa.Array) -> pa.Array | None:
    """:func:`mask_name` of every value (first code point + ``*``; empty -> null), or None
    when some value is not text."""
    got = _ascii_rows(values)
    if got is None:
        return None
    arr = got[0]
    out = pc.binary_join_element_wise(pc.utf8_slice_codeunits(arr, 0, 1), "*", "")
    return pc.if_else(pc.equal(pc.utf8_length(arr), 0), pa.scalar(None, pa.string()), out)


def valid_ids(ids: list[str | None] | pa.Array) -> np.ndarray:
    """:func:`valid_id` of each normalized number, column-wise: the format by an Arrow regex,
    the birth date and the MOD 11-2 check character with numpy on the 18 ASCII bytes (the
    Python check character per row was a quarter of the person dataset's key time)."""
    arr = pc.cast(ids, pa.string()) if isinstance(ids, pa.Array) else pa.array(ids, pa.string())
    out = pc.fill_null(pc.match_substring_regex(arr, _ID18_RE.pattern), False
                       ).to_numpy(zero_copy_only=False).copy()
    if not out.any():
        return out
    chars = fixed_width_bytes(pc.filter(arr, pa.array(out)), 18)
    digits = chars[:, :17].astype(np.int64) - 48
    y = digits[:, 6:10] @ np.array([1000, 100, 10, 1])
    m = digits[:, 10:12] @ np.array([10, 1])
    d = digits[:, 12:14] @ np.array([10, 1])
    real = (y >= 1) & real_dates(y, m, d)
    check = CHECK_BYTES[(digits @ np.array(_WEIGHTS)) % 11]
    out[out] = real & (check == chars[:, 17])
    return out


def _listed(values: Iterable[object]) -> list[object]:
    """A column's values as a list: ``tolist()`` where there is one (iterating a pandas
    Arrow-backed column boxes each value one by one, ~15x slower)."""
    tolist = getattr(values, "tolist", None)
    return tolist() if callable(tolist) else list(values)


def person_keys(key: PseudoKey, id_nos: Iterable[object], names: Iterable[object],
                birth_dates: Iterable[object], genders: Iterable[object]) -> list[str]:
    """Column-wise person keys (see :func:`person_key`)."""
    return person_keys_strength(key, id_nos, names, birth_dates, genders)[0]


def mask_id(id_no: str | None) -> str | None:
    """``11010519491231002X`` -> ``110105********002X`` (GB 11643: area code + last 4 kept);
    other documents keep only their first and last 2 characters (``E1*****78``)."""
    if not id_no:
        return None
    if len(id_no) in (15, 18):
        return id_no[:6] + "*" * (len(id_no) - 10) + id_no[-4:]
    if len(id_no) <= 6:
        return "*" * len(id_no)
    return id_no[:2] + "*" * (len(id_no) - 4) + id_no[-2:]


def mask_phone(phone: str | None) -> str | None:
    """``13812345678`` -> ``138****5678``; shorter numbers keep only the last 2 digits. At
    most 20 characters (the data element's length): a longer number's middle is 13 stars."""
    if not phone:
        return None
    if len(phone) >= 11:
        return phone[:3] + "*" * min(len(phone) - 7, 13) + phone[-4:]
    return "*" * max(len(phone) - 2, 0) + phone[-2:]


def mask_name(name: str | None) -> str | None:
    """Surname (first character) + ``*``: ``张三丰`` -> ``张*``."""
    if not name:
        return None
    return name[0] + "*"
