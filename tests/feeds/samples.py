"""Standardized rows for feed tests, shaped exactly like ``standardize()`` output."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pandas as pd

DEPTS = ["01", "02", "03", "07", "50"]


def visits(tenant: str = "C001", n: int = 10, *, start_key: int = 1, row_version: int = 100,
           day: date = date(2024, 3, 1), load_id: str = "L1") -> pd.DataFrame:
    """``n`` valid std_outpatient_visit rows (schema-valid payloads)."""
    keys = list(range(start_key, start_key + n))
    t0 = datetime(day.year, day.month, day.day, 8, 0, 0)
    bt = [t0 + timedelta(minutes=3 * i) for i in range(n)]
    return pd.DataFrame({
        "tenant": tenant,
        "source_key": pd.Series(keys, dtype="int64"),
        "row_version": pd.Series([row_version + i for i in range(n)], dtype="int64"),
        "business_time": pd.Series(bt, dtype="datetime64[us]"),
        "business_date": pd.Series([b.date() for b in bt], dtype=object),
        "map_version": "2026.11",
        "load_id": load_id,
        "visit_no": [f"V{tenant}{k:08d}" for k in keys],
        "person_key": [f"{k:064x}" for k in keys],
        "dept_code_local": [f"K{k % 7}" for k in keys],
        "dept_code": [DEPTS[k % len(DEPTS)] for k in keys],
        "doctor_code": [f"D{k % 13:03d}" for k in keys],
        "first_visit_code": ["1" if k % 3 else "2" for k in keys],
        "visit_type_code": "1",
        "reg_fee": [round(5 + (k % 4) * 2.5, 2) for k in keys],
        "status_code": "1",
        "is_deleted": False,
    })
