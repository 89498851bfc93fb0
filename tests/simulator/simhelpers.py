"""Helpers for the simulator tests: small run parameters, table reads and hashes."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import date

import pandas as pd

from hisx.simulator.schema import TABLES, primary_key

SMALL = dict(centers=3, months=2, start=date(2026, 8, 1), visits_per_month=3000, progress=False)
TINY = dict(centers=3, months=1, start=date(2026, 8, 1), visits_per_month=600, progress=False)


def read_table(path, name: str) -> pd.DataFrame:
    t = next(t for t in TABLES if t.name == name)
    with sqlite3.connect(path) as con:
        return pd.read_sql_query(f"SELECT * FROM {name} ORDER BY {primary_key(t)}", con)


def table_hash(path, name: str, drop: tuple[str, ...] = ()) -> str:
    df = read_table(path, name).drop(columns=list(drop))
    return hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()
