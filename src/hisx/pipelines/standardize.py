"""Standardization: source rows -> std_<dataset> rows (WS 363/364) or quarantine, vectorized.

Column-wise pandas: text is NFKC-normalized and stripped, local codes are mapped through the
center's :class:`~hisx.standards.maps.MapSet`, validators return boolean masks, and every
failing check appends its reason (``kind:field[:value]``) to that row's list. A row with any
reason is quarantined with its original values; the rest are standardized. Duplicate source
rows (same natural key, different PK; or the same PK twice) are counted, not quarantined.
Conservation: ``len(df) == len(standardized) + len(quarantined) + deduplicated``.

Source timestamps are naive China local wall-clock times (UTC+8, no DST); an aware ``now`` (or
aware source value) is converted to that wall clock before comparing.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from hisx.standards import pseudonym
from hisx.standards import validators as v
from hisx.standards.catalog import ICD10_CODE_SYSTEM
from hisx.standards.datasets import DATASETS, DatasetSpec
from hisx.standards.maps import MapSet, load_maps, maps_group

__all__ = ["DATASETS", "DatasetSpec", "StdResult", "standardize", "person_key_lookup",
           "existing_keys_from_std",
           "json_records", "QUARANTINE_COLUMNS"]

CHINA_TZ = timezone(timedelta(hours=8))
QUARANTINE_COLUMNS = ["dataset", "tenant", "source_table", "source_key", "row_version",
                      "reasons", "original", "load_id", "quarantined_at", "business_date"]
MAX_REASON_VALUE = 40
#: datasets whose source rows reference a patient and so carry person_key
NEEDS_PERSON_KEY = {"outpatient_visit", "chronic_followup", "family_contract"}


@dataclass
class StdResult:
    """Outcome of one batch: standardized rows, quarantined rows, duplicates dropped."""

    standardized: pd.DataFrame
    quarantined: pd.DataFrame
    deduplicated: int
    #: duplicates dropped per center (a batch may hold several centers' rows)
    deduplicated_by: dict[str, int] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        return {"standardized": len(self.standardized), "quarantined": len(self.quarantined),
                "deduplicated": self.deduplicated}


# --- coercion ---------------------------------------------------------------------------------
def _present(s: pd.Series) -> pd.Series:
    """True where a source value is there (not null, not an empty/blank string)."""
    if (pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_datetime64_any_dtype(s.dtype)):
        return s.notna().astype(bool)
    inferred = pd.api.types.infer_dtype(s, skipna=True)
    if inferred in ("decimal", "datetime", "date", "integer", "floating", "mixed-integer-float"):
        return s.notna().astype(bool)
    if inferred in ("string", "empty"):
        t = s.astype(object).where(s.notna(), None).str.normalize("NFKC").str.strip()
        return (t.notna() & (t != "")).astype(bool)
    def one(x: object) -> bool:
        if x is None or x is pd.NA or x is pd.NaT:
            return False
        if isinstance(x, float) and math.isnan(x):
            return False
        return not (isinstance(x, str) and not unicodedata.normalize("NFKC", x).strip())
    return pd.Series([one(x) for x in s.to_numpy(dtype=object)], index=s.index, dtype=bool)


def _naive_local(x: datetime) -> datetime:
    return x.astimezone(CHINA_TZ).replace(tzinfo=None) if x.tzinfo is not None else x


def _to_datetime(s: pd.Series) -> pd.Series:
    """datetime64 (naive local); anything not a date/time or parseable text -> NaT."""
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        if getattr(s.dt, "tz", None) is not None:
            s = s.dt.tz_convert(CHINA_TZ).dt.tz_localize(None)
        return _in_python_range(s.astype("datetime64[us]"))

    if pd.api.types.infer_dtype(s, skipna=True) in ("datetime", "date"):
        try:  # column-wise when every value is a date/datetime (naive or one tz)
            out = pd.to_datetime(s, errors="coerce")
            if out.isna().sum() == s.isna().sum():  # else mixed naive/aware: go row by row
                if getattr(out.dt, "tz", None) is not None:
                    out = out.dt.tz_convert(CHINA_TZ).dt.tz_localize(None)
                return _in_python_range(out.astype("datetime64[us]"))
        except (ValueError, TypeError, OverflowError):
            pass

    def one(x: object) -> object:
        if isinstance(x, pd.Timestamp | datetime):
            return _naive_local(x)
        if isinstance(x, date):
            return datetime(x.year, x.month, x.day)
        if isinstance(x, np.datetime64):
            return x
        if isinstance(x, str):
            t = unicodedata.normalize("NFKC", x).strip()
            if not t or len(t) > 40:
                return None
            try:
                ts = pd.Timestamp(t)
            except (ValueError, OverflowError, TypeError):
                return None
            return None if ts is pd.NaT else _naive_local(ts.to_pydatetime())
        return None
    def safe(x: object) -> object:
        try:
            return one(x)
        except (ValueError, OverflowError, TypeError, ArithmeticError):
            return None
    vals = [safe(x) for x in s.to_numpy(dtype=object)]
    out = pd.to_datetime(pd.Series(vals, index=s.index, dtype=object), errors="coerce"
                         ).astype("datetime64[us]")
    return _in_python_range(out)


_MIN_TS, _MAX_TS = pd.Timestamp(datetime(1, 1, 2)), pd.Timestamp(datetime(9999, 12, 30))


def _in_python_range(ts: pd.Series) -> pd.Series:
    """NaT for instants Python's datetime cannot hold (year < 1 or > 9999)."""
    return ts.where((ts >= _MIN_TS) & (ts <= _MAX_TS))


def _to_number(s: pd.Series) -> pd.Series:
    """float64; bools, text that is not a number, inf -> NaN."""
    if _arrow_numeric(s.dtype):  # Arrow decimals (money): cast in C++, nulls -> NaN
        out = pd.Series(pc.cast(s.array.__arrow_array__(), pa.float64()).to_numpy(),
                        index=s.index, dtype="float64")
    elif pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        out = s.astype("float64")
    elif pd.api.types.infer_dtype(s, skipna=True) in ("decimal", "integer", "floating",
                                                       "mixed-integer-float"):
        out = pd.to_numeric(s, errors="coerce").astype("float64")  # DB Decimals: column-wise
    else:
        def one(x: object) -> float:
            if isinstance(x, bool | np.bool_) or x is None:
                return math.nan
            if isinstance(x, int | float | Decimal | np.integer | np.floating):
                try:
                    return float(x)
                except (ValueError, OverflowError):
                    return math.nan
            if isinstance(x, str):
                t = unicodedata.normalize("NFKC", x).strip()
                if len(t) > 40:
                    return math.nan
                try:
                    return float(Decimal(t))
                except (ArithmeticError, ValueError):
                    return math.nan
            return math.nan
        out = pd.Series([one(x) for x in s.to_numpy(dtype=object)], index=s.index, dtype="float64")
    return out.where(np.isfinite(out), np.nan)


def _arrow_numeric(dtype: object) -> bool:
    """An Arrow-backed decimal, integer or float column (pandas' own ``astype`` of one goes
    through a Python object per value: ~100x slower than Arrow's cast)."""
    if not isinstance(dtype, pd.ArrowDtype):
        return False
    t = dtype.pyarrow_dtype
    return pa.types.is_decimal(t) or pa.types.is_integer(t) or pa.types.is_floating(t)


_EXACT_FLOAT = 2**53  # beyond this a float64 no longer holds every integer


def _exact_int(x: object) -> object:
    """The exact integer of an integral int / Decimal / numeric text (no float round trip)."""
    try:
        if isinstance(x, str):
            x = Decimal(unicodedata.normalize("NFKC", x).strip())
        return int(x) if not isinstance(x, bool | np.bool_) else pd.NA
    except (ArithmeticError, ValueError, TypeError):
        return pd.NA


def _to_int(s: pd.Series) -> pd.Series:
    """Int64 where the value is an integral number within ±2**62; else NA.

    Exact: integer columns pass through untouched and values beyond 2**53 are re-read from the
    source value, so large keys and row versions (a ROWVERSION, an id with a center prefix) are
    never rounded by a float64 round trip."""
    if pd.api.types.is_integer_dtype(s.dtype):
        out = s.astype("Int64")
        return out.where(out.notna() & (out.abs() < 2**62))
    f = _to_number(s)
    ok = f.notna() & (f == np.floor(f)) & (f.abs() < 2**62)
    out = f.where(ok & (f.abs() < _EXACT_FLOAT)).astype("Int64")
    big = ok & (f.abs() >= _EXACT_FLOAT)
    if big.any():
        exact = pd.array([_exact_int(x) for x in s[big].to_numpy(dtype=object)], dtype="Int64")
        out[big] = exact
        out = out.where(out.isna() | (out.abs() < 2**62))
    return out


def _dates(ts: pd.Series) -> pd.Series:
    """datetime64 -> python date objects (None for NaT): Arrow date32. numpy makes the date
    objects in C (15x faster than a Python loop over a batch's ~15,000 distinct birth days)."""
    return pd.Series(ts.to_numpy(dtype="datetime64[D]").astype(object), index=ts.index,
                     dtype=object)


def _omap(s: pd.Series, fn: Callable[[Any], Any]) -> pd.Series:
    """Element-wise map into an object Series that keeps None (Series.map may turn it to NaN)."""
    return pd.Series([fn(x) for x in s.to_numpy(dtype=object)], index=s.index, dtype=object)


def _money(f: pd.Series) -> pd.Series:
    return f.round(2)


def _clip(value: object) -> str:
    s = str(value).replace(":", "\uff1a") if value is not None else ""
    return s if len(s) <= MAX_REASON_VALUE else s[:MAX_REASON_VALUE] + "…"


# --- the per-batch context --------------------------------------------------------------------
class _Batch:
    """Holds the source frame, output columns and collected reasons of one batch."""

    def __init__(self, spec: DatasetSpec, df: pd.DataFrame, maps: MapSet,
                 lookups: Mapping[str, Collection[Any]] | None):
        self.spec, self.df, self.maps, self.lookups = spec, df, maps, lookups or {}
        self.out: dict[str, pd.Series] = {}
        self.reasons: list[tuple[pd.Series, str | pd.Series]] = []
        self._text: dict[str, tuple[pd.Series, np.ndarray, pa.Array | None]] = {}

    def norm(self, name: str) -> tuple[pd.Series, np.ndarray, pa.Array | None]:
        """``as_str`` of a source column and its absent mask, computed once per batch."""
        if name not in self._text:
            raw = self.col(name)
            arr = v.normalized_arrow(raw) if len(raw) else None
            if arr is not None:
                s = v.arrow_to_object(arr, raw.index)
                absent = arr.is_null().to_numpy(zero_copy_only=False)
            else:
                s = v.as_str(raw)
                absent = s.isna().to_numpy(dtype=bool)
            self._text[name] = (s, absent, arr)
        return self._text[name]

    def fail(self, mask: pd.Series, reason: str | pd.Series) -> None:
        mask = mask.fillna(False).astype(bool) if mask.dtype != bool else mask
        if mask.any():
            self.reasons.append((mask, reason))

    def col(self, name: str) -> pd.Series:
        return self.df[name]

    # field kinds
    def text(self, col: str, out: str | None = None, required: bool = False,
             max_length: int | None = None) -> pd.Series:
        s, absent, arr = self.norm(col)
        if required:
            self.fail(pd.Series(absent, index=s.index), f"missing:{col}")
        if max_length:
            lengths = (pc.fill_null(pc.utf8_length(arr), 0).to_numpy() if arr is not None
                       else s.str.len().fillna(0).to_numpy())
            self.fail(pd.Series(lengths > max_length, index=s.index),
                      f"invalid:{col}:too_long")
        self.out[out or col] = s
        return s

    def code(self, col: str, map_name: str, out: str, required: bool = False) -> pd.Series:
        local, absent, _ = self.norm(col)
        std = self.maps.get(map_name).map_series(local)
        if required:
            self.fail(pd.Series(absent, index=local.index), f"missing:{col}")
        unmapped = pd.Series(~absent & pd.isna(std.to_numpy()), index=local.index)
        if unmapped.any():
            self.fail(unmapped, _omap(local[unmapped], lambda x: f"unmapped:{col}:{_clip(x)}"))
        self.out[out] = std
        return std

    def _typed(self, col: str, conv: Callable[[pd.Series], pd.Series], required: bool
               ) -> pd.Series:
        raw = self.col(col)
        val = conv(raw)
        present = _present(raw)
        if required:
            self.fail(~present, f"missing:{col}")
        self.fail(present & val.isna(), f"invalid:{col}:type")
        return val

    def integer(self, col: str, out: str | None = None, required: bool = False) -> pd.Series:
        s = self._typed(col, _to_int, required)
        self.out[out or col] = s
        return s

    def number(self, col: str, out: str | None = None, required: bool = False,
               money: bool = False, nonnegative: bool = False) -> pd.Series:
        s = self._typed(col, _to_number, required)
        if nonnegative:
            self.fail(s < 0, f"invalid:{col}:negative")
        self.out[out or col] = _money(s) if money else s
        return s

    def time(self, col: str, required: bool = False) -> pd.Series:
        return self._typed(col, _to_datetime, required)

    def flag(self, col: str, out: str | None = None, required: bool = False) -> pd.Series:
        s = self._typed(col, _to_int, required)
        vals = s.to_numpy(dtype=np.float64, na_value=np.nan)
        one, zero = vals == 1, vals == 0
        self.fail(pd.Series(~np.isnan(vals) & ~one & ~zero, index=s.index),
                  f"invalid:{col}:flag")
        b = pd.Series(pd.arrays.BooleanArray(one, ~(one | zero)), index=s.index)
        self.out[out or col] = b
        return b

    def reference(self, col: str) -> None:
        """Referential-integrity hook: ``lookups[col]`` = known keys -> ``orphan:<col>``."""
        known = self.lookups.get(col)
        if known is None or col not in self.df:
            return
        vals = _to_int(self.col(col))
        self.fail(vals.notna() & ~vals.isin(list(known)), f"orphan:{col}")

    def person(self, person_keys: pd.DataFrame | None, tenant: pd.Series) -> None:
        """``person_key`` of each row's (center, patient); ``orphan:patient_id`` without one."""
        pid = self._typed("patient_id", _to_int, True)
        if person_keys is None:
            raise ValueError(f"dataset {self.spec.name!r} needs person_keys "
                             "(tenant, patient_id, person_key): see person_key_lookup()")
        pk = person_keys
        if "tenant" in pk.columns:
            centers = pk["tenant"].astype(object).to_numpy()
        elif tenant.nunique() <= 1:  # one center's keys without the column: they are its own
            centers = np.full(len(pk), tenant.iloc[0] if len(tenant) else None, dtype=object)
        else:
            raise ValueError("person_keys of a batch of several centers need a tenant column")
        known = _to_int(pk["patient_id"])
        has = known.notna().to_numpy()
        table = pd.Series(pk["person_key"].to_numpy(dtype=object)[has],
                          index=pd.MultiIndex.from_arrays([
                              centers[has], known.to_numpy(dtype=np.int64, na_value=0)[has]]),
                          dtype=object)
        table = table[~table.index.duplicated(keep="last")]  # as a dict built in row order
        found = pid.notna().to_numpy()
        at = np.full(len(pid), -1, dtype=np.int64)
        if found.any():
            at[found] = table.index.get_indexer(pd.MultiIndex.from_arrays([
                tenant.to_numpy(dtype=object)[found],
                pid.to_numpy(dtype=np.int64, na_value=0)[found]]))
        values = np.append(table.to_numpy(dtype=object), None)
        keys = pd.Series(values[at], index=pid.index, dtype=object)
        self.fail(pid.notna() & keys.isna(), "orphan:patient_id")
        self.out["person_key"] = keys


# --- dataset builders -------------------------------------------------------------------------
def _person(b: _Batch, ctx: dict[str, Any]) -> None:
    key: pseudonym.PseudoKey = ctx["pseudo_key"]
    b.text("patient_no", required=True, max_length=20)
    name, _, name_arr = b.norm("name")
    b.fail(name.isna(), "missing:name")
    b.fail(v.test_names(name), "test_record:name")
    b.out["name_masked"] = _arrow_or(
        pseudonym.mask_names(name_arr) if name_arr is not None else None, name,
        pseudonym.mask_name)
    gender = b.code("gender", "gender", "gender_code", required=True)
    id_type = b.code("id_type", "id_type", "id_type_code")
    raw_id, _, id_arr = b.norm("id_no")
    id_no = _arrow_or(None if id_arr is None else pseudonym.by_ascii(
        id_arr, lambda a: pc.ascii_upper(pc.replace_substring(a, " ", "")), _id_upper),
        raw_id, _id_upper)
    is_card = id_type.eq("01").fillna(False).astype(bool) | (id_type.isna() & v.as_str(
        b.col("id_type")).isna())
    b.fail(is_card & id_no.isna(), "missing:id_no")
    birth = b.time("birth_date")
    b.fail(v.after(birth, ctx["now"]), "future:birth_date")
    # a 户口簿 (02) carries the same GB 11643 number as the ID card, so it is checked too
    card_ids = id_no.where(is_card | id_type.eq("02").fillna(False).astype(bool), None)
    checks = v.validate_national_id(card_ids, birth, gender)
    b.fail(checks["format"], "invalid:id_no:format")
    b.fail(checks["checksum"], "invalid:id_no:checksum")
    b.fail(checks["birth_date"], "invalid:id_no:birth_date")
    b.fail(checks["birth_mismatch"], "inconsistent:id_no:birth_date")
    b.fail(checks["gender_mismatch"], "inconsistent:id_no:gender")
    b.fail(id_no.str.len() > 32, "invalid:id_no:too_long")
    # normalized once: for the keys and for the mask
    norm_ids = pseudonym.normalized_ids(id_no.tolist())
    keys, strengths = pseudonym.keys_of_normalized(
        key, norm_ids, b.col("name"), b.col("birth_date"), b.col("gender"))
    b.out["person_key"] = pd.Series(keys, index=b.df.index, dtype=object)
    b.out["key_id"] = pd.Series(key.key_id, index=b.df.index, dtype=object)
    b.out["person_key_strength"] = pd.Series(strengths, index=b.df.index, dtype=object)
    b.out["id_no_masked"] = v.arrow_to_object(pseudonym.mask_ids(norm_ids), b.df.index)
    b.out["id_legacy15"] = checks["legacy15"].astype("boolean")
    b.out["birth_date"] = _dates(birth)
    b.code("ethnicity", "ethnicity", "ethnicity_code")
    b.code("marital_status", "marital_status", "marital_status_code")
    b.code("insurance_type", "insurance_type", "insurance_type_code")
    div = v.as_str(b.col("division_code"))
    b.fail(div.notna() & ~div.str.fullmatch(r"\d{6}").fillna(False).astype(bool),
           "invalid:division_code:format")
    b.out["division_code"] = div
    # the ASCII digits of the number (Arrow's regex, not a Python loop per character)
    digits = pc.replace_substring_regex(pa.array(v.as_str(b.col("phone")), pa.string()),
                                        "[^0-9]", "")
    digits = pc.if_else(pc.equal(digits, ""), pa.scalar(None, pa.string()), digits)
    b.out["phone_hash"] = v.arrow_to_object(pseudonym.hmac_hex_many(
        key, pc.binary_join_element_wise("phone:", digits, "")), b.df.index)
    b.out["phone_masked"] = v.arrow_to_object(pseudonym.mask_phones(digits), b.df.index)
    b.flag("is_deleted", required=True)


def _id_upper(x: object) -> object:
    """A normalized document number without inner spaces, upper case (None if not text)."""
    return x.replace(" ", "").upper() if isinstance(x, str) else None


def _arrow_or(arr: pa.Array | None, s: pd.Series, fn: Callable[[Any], Any]) -> pd.Series:
    """``arr`` (a column computed by Arrow) as an object Series on ``s``'s index, or
    ``fn`` of each value of ``s`` where Arrow could not take the column."""
    return v.arrow_to_object(arr, s.index) if arr is not None else _omap(s, fn)


def _visit(b: _Batch, ctx: dict[str, Any]) -> None:
    b.text("visit_no", required=True, max_length=18)
    b.person(ctx["person_keys"], ctx["tenants"])
    b.text("dept_code", "dept_code_local", required=True, max_length=20)
    b.code("dept_code", "department", "dept_code", required=True)
    b.text("doctor_code", required=True, max_length=20)
    b.code("visit_kind", "first_visit", "first_visit_code", required=True)
    b.code("visit_type", "visit_type", "visit_type_code", required=True)
    b.number("reg_fee", required=True, money=True, nonnegative=True)
    b.code("status", "visit_status", "status_code", required=True)
    b.flag("is_deleted", required=True)


def _diagnosis(b: _Batch, ctx: dict[str, Any]) -> None:
    b.integer("reg_id", "visit_source_key", required=True)
    b.reference("reg_id")
    b.integer("seq_no", required=True)
    icd = v.normalize_icd(v.as_str(b.col("icd_code")))
    b.fail(icd.isna(), "missing:icd_code")
    b.fail(v.invalid_icd(icd), "invalid:icd_code:format")
    b.out["icd_code"] = icd
    b.out["icd_code_system"] = pd.Series(ICD10_CODE_SYSTEM, index=b.df.index, dtype=object)
    b.text("diag_name", max_length=50)
    b.flag("is_primary", required=True)
    b.out["disease_group"] = v.disease_group(icd.where(~v.invalid_icd(icd), None))


def _prescription(b: _Batch, ctx: dict[str, Any]) -> None:
    b.text("rx_no", required=True, max_length=30)
    b.integer("reg_id", "visit_source_key", required=True)
    b.reference("reg_id")
    b.text("doctor_code", required=True, max_length=20)
    b.code("rx_type", "rx_type", "rx_type_code", required=True)
    b.number("total_amount", required=True, money=True, nonnegative=True)


def _prescription_item(b: _Batch, ctx: dict[str, Any]) -> None:
    b.integer("rx_id", "rx_source_key", required=True)
    b.reference("rx_id")
    b.integer("line_no", required=True)
    b.text("drug_code", "drug_code_local", required=True, max_length=30)
    b.code("drug_code", "drug", "drug_code", required=True)
    b.text("drug_name", max_length=50)
    b.text("spec", max_length=30)
    b.number("dose", nonnegative=True)
    b.text("dose_unit", max_length=10)
    b.code("route", "route", "route_code")
    b.code("frequency", "frequency", "frequency_code")
    days = b.integer("days")
    b.fail(days < 0, "invalid:days:negative")
    qty = b.number("quantity", required=True)
    b.fail(qty <= 0, "invalid:quantity:nonpositive")
    price = b.number("unit_price", required=True, money=True, nonnegative=True)
    amount = b.number("amount", required=True, money=True, nonnegative=True)
    b.fail(v.amount_mismatch(amount, qty, price), "invalid:amount:calc")


def _charge(b: _Batch, ctx: dict[str, Any]) -> None:
    b.text("charge_no", required=True, max_length=30)
    b.integer("reg_id", "visit_source_key", required=True)
    b.reference("reg_id")
    b.integer("rx_id", "rx_source_key")
    b.reference("rx_id")
    b.code("fee_category", "fee_category", "fee_category_code", required=True)
    amount = b.number("amount", required=True, money=True)
    b.code("pay_method", "pay_method", "pay_method_code", required=True)
    b.number("insurance_amount", required=True, money=True)
    b.number("self_amount", required=True, money=True)
    refund_of = b.integer("refund_of", "refund_of_source_key")
    b.reference("refund_of")
    is_refund = amount < 0
    b.fail(is_refund & refund_of.isna(), "invalid:refund_of:missing")
    b.fail((amount >= 0) & refund_of.notna(), "inconsistent:refund_of:amount")
    b.fail(refund_of.notna() & (refund_of == _to_int(b.col("charge_id"))),
           "invalid:refund_of:self")
    b.out["is_refund"] = is_refund.fillna(False).astype("boolean")


def _dispense(b: _Batch, ctx: dict[str, Any]) -> None:
    b.integer("rx_id", "rx_source_key", required=True)
    b.reference("rx_id")
    b.text("pharmacist_code", required=True, max_length=20)
    b.code("status", "dispense_status", "status_code", required=True)


def _followup(b: _Batch, ctx: dict[str, Any]) -> None:
    b.person(ctx["person_keys"], ctx["tenants"])
    b.code("disease", "disease_group", "disease_group", required=True)
    b.code("method", "followup_method", "method_code")
    sbp = b.integer("sbp")
    dbp = b.integer("dbp")
    bp = v.implausible_bp(sbp, dbp)
    b.fail(bp["sbp"], "implausible:sbp")
    b.fail(bp["dbp"], "implausible:dbp")
    b.fail(bp["bp"], "implausible:bp")
    glu = b.number("fasting_glucose")
    b.fail(v.implausible_glucose(glu), "implausible:fasting_glucose")
    b.out["fasting_glucose"] = glu.round(1)
    b.code("adherence", "adherence", "adherence_code")
    b.text("doctor_code", required=True, max_length=20)


def _contract(b: _Batch, ctx: dict[str, Any]) -> None:
    b.text("contract_no", required=True, max_length=30)
    b.person(ctx["person_keys"], ctx["tenants"])
    b.text("team_code", required=True, max_length=20)
    b.text("doctor_code", required=True, max_length=20)
    b.text("package_code", "package_code_local", required=True, max_length=20)
    b.code("package_code", "service_package", "package_code", required=True)
    start = b.time("start_date", required=True)
    end = b.time("end_date", required=True)
    b.fail(end < start, "invalid:end_date:before_start")
    b.out["start_date"] = _dates(start)
    b.out["end_date"] = _dates(end)
    b.code("status", "contract_status", "status_code", required=True)


#: the datasets whose builders look rows' patients up (``_Batch.person``): only they need the
#: ``person_keys`` table, computed by the caller from the patients' source rows
NEEDS_PERSON_KEYS = frozenset({"outpatient_visit", "chronic_followup", "family_contract"})

BUILDERS: dict[str, Callable[[_Batch, dict[str, Any]], None]] = {
    "person": _person, "outpatient_visit": _visit, "diagnosis": _diagnosis,
    "prescription": _prescription, "prescription_item": _prescription_item,
    "charge": _charge, "dispense": _dispense, "chronic_followup": _followup,
    "family_contract": _contract,
}


# --- dedup, quarantine, output ----------------------------------------------------------------
def _sanitize(df: pd.DataFrame) -> pd.DataFrame:
    """Replace signalling Decimal NaNs (pandas' null checks raise on them) with quiet NaN."""
    out = df
    for col in df.columns:
        s = df[col]
        if s.dtype != object or pd.api.types.infer_dtype(s, skipna=False) not in (
                "decimal", "mixed", "mixed-integer", "mixed-integer-float"):
            continue
        vals = s.to_numpy(dtype=object)
        bad = [i for i, x in enumerate(vals) if isinstance(x, Decimal) and x.is_snan()]
        if bad:
            if out is df:
                out = df.copy()
            fixed = vals.copy()
            fixed[bad] = Decimal("NaN")
            out[col] = pd.Series(fixed, index=df.index, dtype=object)
    return out


#: natural-key source column -> its std column, where the names differ
_STD_NK_NAMES = {"reg_id": "visit_source_key", "rx_id": "rx_source_key",
                 "followup_id": "source_key"}


def existing_keys_from_std(dataset: str, std: pd.DataFrame) -> pd.DataFrame:
    """(natural-key source columns without org_code, source_key) from std rows already stored:
    the ``existing_keys`` input that extends deduplication across batches."""
    spec = DATASETS[dataset]
    cols = {c: std[_STD_NK_NAMES.get(c, c)] for c in spec.natural_key if c != "org_code"}
    return pd.DataFrame({**cols, "source_key": std["source_key"]})


def _dedupe(spec: DatasetSpec, df: pd.DataFrame, tenant: pd.Series,
            existing: pd.DataFrame | None = None) -> tuple[pd.DataFrame, int]:
    """Drop repeated PKs (keep the highest row_version) then repeated natural keys (keep the
    lowest PK), within the batch and against ``existing`` std keys of earlier batches (of the
    row's center, ``tenant``). Rows whose natural key is incomplete are kept (they fail
    ``missing:`` later)."""
    n = len(df)
    if n == 0:
        return df, 0
    pk = _to_int(df[spec.pk])
    rv = _to_int(df["row_version"]) if "row_version" in df else pd.Series(pd.NA, index=df.index)
    has_pk = pk.notna().to_numpy()
    at = np.flatnonzero(has_pk)
    keys = pk.to_numpy(dtype=np.int64, na_value=0)[has_pk]
    # per PK the highest row version, then the first position (numpy sorts: a multi-column
    # sort_values of nullable ints went through pandas' categorical lexsort)
    by_pk = np.lexsort((at, -rv.fillna(-1).to_numpy(dtype=np.int64)[has_pk], keys))
    sorted_keys = keys[by_pk]
    first = np.ones(len(by_pk), dtype=bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    keep = ~has_pk
    keep[at[by_pk[first]]] = True
    kept = df[keep]
    nk = pd.DataFrame({c: v.as_str(kept[c]) for c in spec.natural_key}, index=kept.index)
    complete = nk.notna().all(axis=1)
    kept_pk = pk[keep][complete.to_numpy()].fillna(2**62).to_numpy(dtype=np.int64)
    ranked = nk[complete].assign(_pk=kept_pk)
    ranked = ranked.iloc[np.argsort(kept_pk, kind="stable")]  # by PK, then position
    dup = ranked.duplicated(subset=list(spec.natural_key), keep="first")
    drop = set(ranked.index[dup])
    if existing is not None and len(existing) and len(ranked):
        cols = [c for c in spec.natural_key if c != "org_code"]
        own = ranked["org_code"] == tenant.loc[ranked.index]
        cand = ranked[own].assign(_t=ranked.loc[own, "org_code"]).reset_index(names="_label")
        # only the stored keys whose first key column a candidate holds: the existing keys
        # are every std row of the batch's days (tens of thousands for an hour's few hundred
        # rows), and normalizing, sorting and de-duplicating them all was most of an hour's
        # dedup time
        first = v.as_str(existing[cols[0]])
        meets = first.isin(pd.unique(cand[cols[0]].dropna())).to_numpy()
        existing, first = existing[meets], first[meets]
        ex = pd.DataFrame({c: first if c == cols[0] else v.as_str(existing[c]) for c in cols})
        if "tenant" in existing.columns:
            ex["_t"] = existing["tenant"].astype(object).to_numpy()
        elif tenant.nunique() <= 1:  # one center's keys without the column: its own
            ex["_t"] = tenant.iloc[0]
        else:
            raise ValueError("existing keys of a batch of several centers need a tenant column")
        ex["_old"] = _to_int(existing["source_key"]).to_numpy()
        ex = ex.dropna().sort_values("_old").drop_duplicates(cols + ["_t"], keep="first")
        hit = cand.merge(ex, on=cols + ["_t"], how="inner")
        drop |= set(hit.loc[hit["_old"] < hit["_pk"], "_label"])
    out = kept[~kept.index.isin(list(drop))]
    return out, n - len(out)


def _json_default(x: object) -> object:
    if isinstance(x, pd.Timestamp | datetime | date):
        return x.isoformat()
    if isinstance(x, Decimal):
        return str(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return None if np.isnan(x) else float(x)
    if isinstance(x, bytes):
        return x.decode("utf-8", "replace")
    return str(x)


def _clean(x: object) -> object:
    if x is None or x is pd.NA or x is pd.NaT:
        return None
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def _original_days(raw: pd.Series) -> pd.Series:
    """A quarantined row's business day: the date its original business-time value starts
    with (what its ``original`` JSON shows), None when it does not start with one."""
    def day(x: object) -> date | None:
        if isinstance(x, datetime | pd.Timestamp):
            return None if pd.isna(x) else x.date()
        if isinstance(x, date):
            return x
        if isinstance(x, str):
            try:
                return date.fromisoformat(x[:10])
            except ValueError:
                return None
        return None

    return pd.Series([day(x) for x in raw.tolist()], dtype=object)


def _original_json(row: Mapping[str, object]) -> str:
    return json.dumps({str(k): _clean(x) for k, x in row.items()}, default=_json_default,
                      ensure_ascii=False, sort_keys=True)


def json_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Std rows as JSON-ready dicts (ISO dates/times, None for nulls): for feeds and schemas."""
    recs = []
    for row in df.to_dict(orient="records"):
        rec: dict[str, Any] = {}
        for k, x in row.items():
            x = _clean(x)
            if isinstance(x, pd.Timestamp | datetime | date):
                x = x.isoformat()
            elif isinstance(x, np.integer):
                x = int(x)
            elif isinstance(x, np.floating):
                x = float(x)
            elif isinstance(x, np.bool_):
                x = bool(x)
            rec[k] = x
        recs.append(rec)
    return recs


def person_key_lookup(std_person: pd.DataFrame) -> pd.DataFrame:
    """(tenant, patient_id, person_key) from std_person rows: the input other datasets need."""
    return pd.DataFrame({"tenant": std_person["tenant"].astype(object),
                         "patient_id": std_person["source_key"].astype("Int64"),
                         "person_key": std_person["person_key"].astype(object)})


def _empty_std(spec: DatasetSpec) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in spec.columns})


def standardize(dataset: str, df: pd.DataFrame, *, tenant: str | Sequence[str], vendor: str,
                load_id: str,
                now: datetime, person_keys: pd.DataFrame | None = None,
                maps: MapSet | None = None,
                lookups: Mapping[str, Collection[Any]] | None = None,
                pseudo_key: pseudonym.PseudoKey | None = None,
                existing_keys: pd.DataFrame | None = None) -> StdResult:
    """Standardize one batch of one source table for one center, or for several centers that
    share their maps (``tenant`` then gives each row's center, by position; ``maps`` or
    ``vendor`` the maps they share): a batch of many centers' few rows each costs one pass
    instead of one per center.

    ``person_keys`` (tenant, patient_id, person_key) is required for datasets whose rows name
    a patient (visit, follow-up, contract); ``lookups`` maps a foreign-key column (``reg_id``,
    ``rx_id``, ``refund_of``) to known keys to check referential integrity (``orphan:<col>``);
    ``pseudo_key`` defaults to ``HISX_PSEUDO_KEY`` from the environment (person only);
    ``existing_keys`` (see :func:`existing_keys_from_std`) holds natural keys already in std,
    so a duplicate whose original was standardized in an earlier batch is also counted as
    deduplicated (the lower source PK wins).
    """
    if dataset not in DATASETS:
        raise KeyError(f"unknown dataset {dataset!r}; known: {sorted(DATASETS)}")
    spec = DATASETS[dataset]
    needed = _source_columns(spec)
    missing_cols = [c for c in needed if c not in df.columns]
    if missing_cols:
        raise ValueError(f"{spec.source_table}: input lacks columns {missing_cols}")
    src = _sanitize(df.reset_index(drop=True))
    n_in = len(src)
    centers = _row_centers(tenant, n_in)
    if maps is None:
        names = sorted(set(pd.unique(centers.to_numpy()))) or [
            tenant if isinstance(tenant, str) else ""]
        if len({maps_group(c, vendor) for c in names}) > 1:
            raise ValueError(f"centers {names} do not share their maps (another vendor or "
                             "their own overrides): standardize them in separate batches")
        maps = load_maps(names[0], vendor)
    now_local = _naive_local(now)
    work, deduplicated = _dedupe(spec, src, centers, existing_keys)
    kept = centers.loc[work.index]
    ctx: dict[str, Any] = {"tenants": kept, "now": now_local, "person_keys": person_keys}
    if dataset == "person":
        ctx["pseudo_key"] = pseudo_key or pseudonym.key_from_env()

    b = _Batch(spec, work, maps, lookups)
    org = b.norm("org_code")[0]
    b.fail(org.isna(), "missing:org_code")
    other = org.notna() & (org != kept)
    if other.any():
        b.fail(other, _omap(org[other], lambda x: f"mismatch:org_code:{_clip(x)}"))
    pk = b._typed(spec.pk, _to_int, True)
    rv = b._typed("row_version", _to_int, True)
    bt = b.time(spec.business_time, required=True)
    upd = b.time("updated_at", required=True)
    b.fail(v.after(bt, upd) | v.after(bt, pd.Timestamp(now_local)), f"future:{spec.business_time}")
    BUILDERS[dataset](b, ctx)

    # reasons only for failing rows: OR the masks, then list reasons per failing position
    masks = [(m.to_numpy(dtype=bool) if m.index.equals(work.index)
              else m.reindex(work.index, fill_value=False).to_numpy(dtype=bool), r)
             for m, r in b.reasons]
    bad_np = np.zeros(len(work), dtype=bool)
    for m, _ in masks:
        bad_np |= m
    reasons: dict[int, list[str]] = {int(i): [] for i in np.flatnonzero(bad_np)}
    labels = work.index.to_numpy()
    for m, reason in masks:
        idx = np.flatnonzero(m)
        if isinstance(reason, str):
            for i in idx.tolist():
                reasons[i].append(reason)
        else:
            by_label = dict(zip(reason.index, reason.to_numpy(dtype=object), strict=True))
            for i in idx.tolist():
                reasons[i].append(str(by_label[labels[i]]))
    bad = pd.Series(bad_np, index=work.index, dtype=bool)

    good = ~bad
    std = pd.DataFrame(index=work.index[good])
    std["tenant"] = kept[good]
    std["source_key"] = pk[good]
    std["row_version"] = rv[good]
    std["business_time"] = bt[good]
    std["business_date"] = _dates(bt[good])
    std["map_version"] = maps.version
    std["load_id"] = load_id
    for f in spec.fields:
        col = b.out[f.name]
        std[f.name] = col[good]
    std = std.reset_index(drop=True) if len(std) else _empty_std(spec)
    std = std[spec.columns]

    qidx = work.index[bad]
    qrows = work.loc[qidx].to_dict(orient="records")
    quarantined = pd.DataFrame({
        "dataset": dataset,
        "tenant": kept[bad].reset_index(drop=True),
        "source_table": spec.source_table,
        "source_key": pk[bad].reset_index(drop=True),
        "row_version": rv[bad].reset_index(drop=True),
        "reasons": pd.Series([reasons[i] for i in np.flatnonzero(bad_np).tolist()],
                             dtype=object),
        "original": pd.Series([_original_json(r) for r in qrows], dtype=object),
        "load_id": load_id,
        "quarantined_at": pd.Timestamp(now_local),
        "business_date": _original_days(work.loc[qidx, spec.business_time]),
    }, columns=QUARANTINE_COLUMNS)
    if len(quarantined) == 0:
        quarantined = pd.DataFrame({c: pd.Series(dtype=object) for c in QUARANTINE_COLUMNS})
    assert n_in == len(std) + len(quarantined) + deduplicated, "conservation violated"
    dropped = centers[~centers.index.isin(work.index)]
    return StdResult(std, quarantined, deduplicated,
                     {str(k): int(c) for k, c in dropped.value_counts().items()})


def _row_centers(tenant: str | Sequence[str], n: int) -> pd.Series:
    """Each row's center, by position: one center for all, or one per row."""
    if isinstance(tenant, str):
        return pd.Series(np.full(n, tenant, dtype=object), dtype=object)
    arr = np.asarray(list(tenant) if not isinstance(tenant, pd.Series) else tenant.to_numpy(),
                     dtype=object)
    if len(arr) != n:
        raise ValueError(f"tenant gives {len(arr)} centers for a batch of {n} rows")
    return pd.Series(arr, dtype=object)


_SOURCE_COLUMNS: dict[str, tuple[str, ...]] = {
    "person": ("patient_no", "name", "gender", "birth_date", "id_type", "id_no", "phone",
               "division_code", "ethnicity", "marital_status", "insurance_type", "is_deleted"),
    "outpatient_visit": ("visit_no", "patient_id", "dept_code", "doctor_code", "visit_kind",
                         "visit_type", "reg_fee", "status", "is_deleted"),
    "diagnosis": ("reg_id", "seq_no", "icd_code", "diag_name", "is_primary"),
    "prescription": ("rx_no", "reg_id", "doctor_code", "rx_type", "total_amount"),
    "prescription_item": ("rx_id", "line_no", "drug_code", "drug_name", "spec", "dose",
                          "dose_unit", "route", "frequency", "days", "quantity", "unit_price",
                          "amount"),
    "charge": ("charge_no", "reg_id", "rx_id", "fee_category", "amount", "pay_method",
               "insurance_amount", "self_amount", "refund_of"),
    "dispense": ("rx_id", "pharmacist_code", "status"),
    "chronic_followup": ("patient_id", "disease", "method", "sbp", "dbp", "fasting_glucose",
                         "adherence", "doctor_code"),
    "family_contract": ("contract_no", "patient_id", "team_code", "doctor_code", "package_code",
                        "start_date", "end_date", "status"),
}


def _source_columns(spec: DatasetSpec) -> tuple[str, ...]:
    base = ("org_code", spec.pk, spec.business_time, "updated_at", "row_version")
    return base + tuple(c for c in _SOURCE_COLUMNS[spec.name] if c not in base)
