"""Vectorized validators: each takes pandas Series and returns boolean masks (True = failure).

They never raise on hostile input: values of the wrong type count as invalid, nulls are left
to the caller's ``missing:`` checks (a validator's mask is False where its input is null).
"""

from __future__ import annotations

import unicodedata
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from hisx.standards.catalog import CHRONIC_GROUPS, ICD10_PATTERN

ID18_PATTERN = r"^\d{17}[\dX]$"
ID15_PATTERN = r"^\d{15}$"
_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
_CHECK = np.array(list("10X98765432"))

SBP_RANGE = (60, 260)
DBP_RANGE = (30, 160)
GLUCOSE_RANGE = (1.0, 35.0)
MONEY_TOLERANCE = 0.01
TEST_NAME_PATTERN = r"(?i)(?:测试|test|demo|演示|虚拟|勿动|^\s*(?:xxx|aaa)\s*$)"


# --- text -------------------------------------------------------------------------------------
def _norm_one(v: object) -> object:
    if isinstance(v, str):
        s = unicodedata.normalize("NFKC", v).strip()
        return s if s else None
    return v


def normalize_text(s: pd.Series) -> pd.Series:
    """NFKC (full-width digits/letters -> ASCII), strip; empty -> None. Non-strings kept as is."""
    if len(s) == 0:
        return s.astype(object)
    return pd.Series([_norm_one(v) for v in s.to_numpy(dtype=object)], index=s.index, dtype=object)


def _stringish(s: pd.Series) -> bool:
    return pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty")


def _nfkc_strip(x: str) -> str:
    return unicodedata.normalize("NFKC", x).strip()


def _to_arrow_text(s: pd.Series) -> pa.Array | None:
    """The Series as one Arrow string array when it holds only text and nulls; else None."""
    dt = s.dtype
    try:
        arrow_text = isinstance(dt, pd.ArrowDtype) and (
            pa.types.is_string(dt.pyarrow_dtype) or pa.types.is_large_string(dt.pyarrow_dtype))
        if arrow_text or (isinstance(dt, pd.StringDtype) and dt.storage == "pyarrow"):
            arr = s.array.__arrow_array__()
        elif (dt.kind == "O" or isinstance(dt, pd.StringDtype)) and _stringish(s):
            vals = s.to_numpy(dtype=object)
            if not all(type(x) is str for x in vals[pd.notna(vals)]):
                return None  # str subclasses (np.str_ ...): keep the generic path
            arr = pa.array(vals, type=pa.large_string(), from_pandas=True)
        else:
            return None
    except (pa.ArrowException, UnicodeError, TypeError, ValueError):
        return None  # e.g. lone surrogates: not encodable as UTF-8
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return arr.cast(pa.large_string()) if not pa.types.is_large_string(arr.type) else arr


def normalized_arrow(s: pd.Series) -> pa.Array | None:
    """:func:`as_str` of a text column as an Arrow large_string array (null where absent), or
    None when the column is not plain text. ASCII values skip NFKC (it is the identity on
    ASCII) and are stripped by Arrow (same whitespace set as ``str.strip``); other values go
    through ``unicodedata`` once per distinct value."""
    arr = _to_arrow_text(s)
    if arr is None:
        return None
    out = pc.utf8_trim_whitespace(arr)
    non_ascii = pc.invert(pc.fill_null(pc.string_is_ascii(arr), True))
    if pc.any(non_ascii).as_py():
        vals = pc.filter(arr, non_ascii).dictionary_encode()
        fixed = pa.array([_nfkc_strip(x) for x in vals.dictionary.to_pylist()],
                         type=pa.large_string())
        out = pc.replace_with_mask(out, non_ascii, pc.take(fixed, vals.indices))
    empty = pc.fill_null(pc.equal(pc.binary_length(out), 0), False)
    if pc.any(empty).as_py():
        out = pc.if_else(empty, pa.scalar(None, pa.large_string()), out)
    return out


def arrow_to_object(arr: pa.Array, index: pd.Index) -> pd.Series:
    """An Arrow string array as an object Series of str / None."""
    return pd.Series(arr.to_numpy(zero_copy_only=False), index=index, dtype=object)


def as_str(s: pd.Series) -> pd.Series:
    """Values as normalized text (ints -> '12'); None where absent. For codes and identifiers."""
    if len(s) and isinstance(s.dtype, np.dtype) and s.dtype.kind in "iu":  # numpy ints: decimal digits, never absent
        return pd.Series(np.array([str(x) for x in s.to_numpy().tolist()], dtype=object),
                         index=s.index, dtype=object)
    if len(s):
        arr = normalized_arrow(s)
        if arr is not None:
            return arrow_to_object(arr, s.index)
    if len(s) and _stringish(s):  # column-wise NFKC + strip
        t = s.astype(object).where(s.notna(), None)
        t = t.str.normalize("NFKC").str.strip()
        return t.where(t.notna() & (t != ""), None).astype(object)
    def one(v: object) -> object:
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA or v is pd.NaT:
            return None
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        if isinstance(v, bool):
            return str(int(v))
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if not isinstance(v, str):
            v = str(v)
        s = unicodedata.normalize("NFKC", v).strip()
        return s if s else None
    return pd.Series([one(v) for v in s.to_numpy(dtype=object)], index=s.index, dtype=object)


def is_null(s: pd.Series) -> pd.Series:
    return s.isna()


# --- GB 11643 ---------------------------------------------------------------------------------
def id_check_chars(ids: pd.Series) -> pd.Series:
    """Expected MOD 11-2 check character of 18-char strings (first 17 digits); None otherwise."""
    s = ids.astype(object).where(ids.notna(), None)
    ok = s.map(lambda v: isinstance(v, str) and len(v) == 18 and v[:17].isdigit() and v[:17].isascii())
    out = pd.Series(None, index=ids.index, dtype=object)
    if ok.any():
        digits = np.array([[ord(c) - 48 for c in v[:17]] for v in s[ok]], dtype=np.int64)
        out[ok] = _CHECK[(digits @ _WEIGHTS) % 11]
    return out


def id_birth_dates(ids: pd.Series) -> pd.Series:
    """Birth date encoded in an 18- or 15-digit ID (datetime64, NaT when not a real date)."""
    s = ids.astype(object).where(ids.notna(), None)
    ymd = s.map(lambda v: v[6:14] if isinstance(v, str) and len(v) == 18
                else ("19" + v[6:12] if isinstance(v, str) and len(v) == 15 else None))
    return pd.to_datetime(ymd, format="%Y%m%d", errors="coerce")


def id_sex_codes(ids: pd.Series) -> pd.Series:
    """GB/T 2261.1 gender code from the sequence digit: odd -> '1', even -> '2'."""
    def one(v: object) -> object:
        if not isinstance(v, str):
            return None
        d = v[16] if len(v) == 18 else (v[14] if len(v) == 15 else None)
        if d is None or not d.isdigit():
            return None
        return "1" if int(d) % 2 else "2"
    return ids.astype(object).map(one)


def validate_national_id(ids: pd.Series, birth_dates: pd.Series | None = None,
                         genders: pd.Series | None = None) -> dict[str, pd.Series]:
    """GB 11643 checks on normalized IDs (upper-case, no spaces). Masks keyed by reason suffix:

    ``format`` (neither ``^\\d{17}[\\dX]$`` nor 15 digits), ``checksum`` (MOD 11-2),
    ``birth_date`` (not a real date), ``birth_mismatch`` / ``gender_mismatch`` (vs the record;
    only where the record value is present), and ``legacy15`` (a flag, not a failure).

    Column-wise: the formats by Arrow regexes on ASCII text, the check character, birth date
    and sex digit with numpy on the fixed-width bytes (row by row in Python this was a fifth
    of the person dataset's standardization). Values that are not ASCII text (``\\d`` also
    matches other scripts' digits in Python) take :func:`validate_national_id_rows`, the same
    masks value by value.
    """
    s = ids.astype(object).where(ids.notna(), None)
    try:
        arr = pa.array(s.to_numpy(), pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # values that are not text
        return validate_national_id_rows(ids, birth_dates, genders)
    other = ~pc.fill_null(pc.string_is_ascii(arr), True).to_numpy(zero_copy_only=False)
    n = len(s)
    present = s.notna().to_numpy()
    is18 = _matches(arr, r"^[0-9]{17}[0-9X]$") & ~other
    is15 = _matches(arr, r"^[0-9]{15}$") & ~other
    checksum = np.zeros(n, dtype=bool)
    real = np.zeros(n, dtype=bool)
    day = np.full(n, np.datetime64("NaT"), dtype="datetime64[us]")
    odd = np.zeros(n, dtype=bool)
    for mask, width in ((is18, 18), (is15, 15)):
        if not mask.any():
            continue
        d = fixed_width_bytes(pc.filter(arr, pa.array(mask)), width).astype(np.int64) - 48
        if width == 18:
            checksum[mask] = CHECK_BYTES[(d[:, :17] @ _WEIGHTS) % 11] != d[:, 17] + 48
            y, m, dd, sex = d[:, 6:10] @ _Y4, d[:, 10:12] @ _Y2, d[:, 12:14] @ _Y2, d[:, 16]
        else:
            y, m, dd, sex = 1900 + d[:, 6:8] @ _Y2, d[:, 8:10] @ _Y2, d[:, 10:12] @ _Y2, d[:, 14]
        ok = real_dates(y, m, dd)
        real[mask] = ok
        months = ((y - 1970) * 12 + m - 1).astype("datetime64[M]")
        day[mask] = np.where(ok, months.astype("datetime64[D]") + (dd - 1), np.datetime64("NaT"))
        odd[mask] = sex % 2 == 1
    idx = s.index
    good = (is18 | is15) & real
    out = {"format": pd.Series(present & ~is18 & ~is15 & ~other, index=idx),
           "checksum": pd.Series(is18 & checksum, index=idx),
           "birth_date": pd.Series((is18 | is15) & ~real, index=idx),
           "legacy15": pd.Series(is15, index=idx)}
    if birth_dates is not None:
        rec = pd.to_datetime(birth_dates, errors="coerce").dt.normalize()
        bd = pd.Series(day, index=idx)
        out["birth_mismatch"] = (pd.Series(good, index=idx) & rec.notna()
                                 & (bd != rec)).astype(bool)
    if genders is not None:
        g = genders.astype(object)
        sex_code = np.where(odd, "1", "2")
        out["gender_mismatch"] = pd.Series(good & g.isin(["1", "2"]).to_numpy()
                                           & (sex_code != g.to_numpy()), index=idx)
    if other.any():  # non-ASCII values: the masks value by value
        sub = validate_national_id_rows(
            ids[other], None if birth_dates is None else birth_dates[other],
            None if genders is None else genders[other])
        for k, mask in sub.items():
            out[k] = out[k].copy()
            out[k][other] = mask.to_numpy(dtype=bool)
    return out


#: the MOD 11-2 check character (as its ASCII byte) of each remainder
CHECK_BYTES = np.frombuffer(b"10X98765432", dtype=np.uint8).astype(np.int64)
_Y4 = np.array([1000, 100, 10, 1])
_Y2 = np.array([10, 1])
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _matches(arr: pa.Array, pattern: str) -> np.ndarray:
    return pc.fill_null(pc.match_substring_regex(arr, pattern), False).to_numpy(
        zero_copy_only=False)


def fixed_width_bytes(arr: pa.Array, width: int) -> np.ndarray:
    """The bytes of an array of ASCII strings all ``width`` long, as a (rows, width) matrix."""
    _, offsets, data = arr.buffers()
    start = np.frombuffer(offsets, dtype=np.int32)[arr.offset]
    return np.frombuffer(data, dtype=np.uint8)[start:start + width * len(arr)].reshape(
        -1, width)


def real_dates(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Whether each (year, month, day) is a proleptic Gregorian date of years 0000-9999: what
    ``pd.to_datetime(format="%Y%m%d")`` accepts (year 0000 included, a leap year)."""
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    days = _DAYS_IN_MONTH[np.clip(m, 0, 12)] + ((m == 2) & leap)
    return (m >= 1) & (m <= 12) & (d >= 1) & (d <= days)


def validate_national_id_rows(ids: pd.Series, birth_dates: pd.Series | None = None,
                              genders: pd.Series | None = None) -> dict[str, pd.Series]:
    """:func:`validate_national_id` value by value (Python's ``re`` and ``pandas``): the
    reference it is tested against, and the path of non-ASCII or non-text values.

    GB 11643 checks on normalized IDs (upper-case, no spaces). Masks keyed by reason suffix:

    ``format`` (neither ``^\\d{17}[\\dX]$`` nor 15 digits), ``checksum`` (MOD 11-2),
    ``birth_date`` (not a real date), ``birth_mismatch`` / ``gender_mismatch`` (vs the record;
    only where the record value is present), and ``legacy15`` (a flag, not a failure).
    """
    s = ids.astype(object).where(ids.notna(), None)
    present = s.notna()
    is18 = s.str.fullmatch(ID18_PATTERN).fillna(False).astype(bool) & present
    is15 = s.str.fullmatch(ID15_PATTERN).fillna(False).astype(bool) & present
    fmt = present & ~is18 & ~is15
    expect = id_check_chars(s.where(is18, None))
    checksum = is18 & (expect != s.str[17])
    bd = id_birth_dates(s.where(is18 | is15, None))
    bad_date = (is18 | is15) & bd.isna()
    out = {"format": fmt, "checksum": checksum.fillna(False).astype(bool),
           "birth_date": bad_date, "legacy15": is15}
    good = (is18 | is15) & ~bad_date
    if birth_dates is not None:
        rec = pd.to_datetime(birth_dates, errors="coerce").dt.normalize()
        out["birth_mismatch"] = (good & rec.notna() & (bd != rec)).astype(bool)
    if genders is not None:
        sex = id_sex_codes(s)
        g = genders.astype(object)
        known = g.isin(["1", "2"])
        out["gender_mismatch"] = (good & known & (sex != g)).fillna(False).astype(bool)
    return out


# --- ICD-10 -----------------------------------------------------------------------------------
def normalize_icd(codes: pd.Series) -> pd.Series:
    """Upper-case the category letters but keep the lower-case ``x`` placeholder/extension."""
    def one(v: object) -> object:
        if not isinstance(v, str):
            return v
        chars = list(v.replace(" ", "").upper())
        for i, c in enumerate(chars):
            if c == "X" and i > 0 and chars[i - 1] != "+":
                chars[i] = "x"
        return "".join(chars)
    return codes.astype(object).map(one)


def invalid_icd(codes: pd.Series) -> pd.Series:
    """True where a present code does not match the national clinical edition format."""
    s = codes.astype(object).where(codes.notna(), None)
    ok = s.str.fullmatch(ICD10_PATTERN).fillna(False).astype(bool)
    return s.notna() & ~ok


def disease_group(codes: pd.Series) -> pd.Series:
    """HTN for I10-I15, DM for E10-E14, else None (on normalized codes)."""
    def one(c: object) -> object:
        if not isinstance(c, str) or len(c) < 3 or not (c[0].isalpha() and c[1:3].isdigit()):
            return None
        for group, (lo, hi) in CHRONIC_GROUPS.items():
            if lo <= c[:3] <= hi:
                return group
        return None
    return pd.Series([one(c) for c in codes.to_numpy(dtype=object)], index=codes.index,
                     dtype=object)


# --- time -------------------------------------------------------------------------------------
def after(times: pd.Series, limit: pd.Series | datetime) -> pd.Series:
    """True where ``times`` is strictly after ``limit`` (both present)."""
    res = times > limit
    return res.fillna(False).astype(bool)


# --- vitals -----------------------------------------------------------------------------------
def out_of_range(values: pd.Series, lo: float, hi: float) -> pd.Series:
    v = pd.to_numeric(values, errors="coerce")
    return (v.notna() & ((v < lo) | (v > hi))).astype(bool)


def implausible_bp(sbp: pd.Series, dbp: pd.Series) -> dict[str, pd.Series]:
    """Masks ``sbp`` (outside 60-260), ``dbp`` (outside 30-160), ``bp`` (SBP <= DBP)."""
    s = pd.to_numeric(sbp, errors="coerce")
    d = pd.to_numeric(dbp, errors="coerce")
    return {"sbp": out_of_range(s, *SBP_RANGE), "dbp": out_of_range(d, *DBP_RANGE),
            "bp": (s.notna() & d.notna() & (s <= d)).astype(bool)}


def implausible_glucose(glucose: pd.Series) -> pd.Series:
    return out_of_range(glucose, *GLUCOSE_RANGE)


# --- money ------------------------------------------------------------------------------------
def amount_mismatch(amount: pd.Series, quantity: pd.Series, unit_price: pd.Series,
                    tol: float = MONEY_TOLERANCE) -> pd.Series:
    """True where |amount - quantity * unit_price| > tol (all three present)."""
    a, q, p = (pd.to_numeric(x, errors="coerce").astype(float) for x in (amount, quantity, unit_price))
    diff = (a - q * p).abs()
    return (diff > tol + 1e-9).fillna(False).astype(bool)


def negative(values: pd.Series) -> pd.Series:
    v = pd.to_numeric(values, errors="coerce")
    return (v < 0).fillna(False).astype(bool)


# --- test records -----------------------------------------------------------------------------
def test_names(names: pd.Series) -> pd.Series:
    """True where a name looks like a test/demo record (测试, test, demo ...)."""
    s = names.astype(object).where(names.notna(), None)
    s = s.where(s.map(lambda v: isinstance(v, str)), None)
    return s.str.contains(TEST_NAME_PATTERN, regex=True).fillna(False).astype(bool)
