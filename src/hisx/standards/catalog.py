"""The standard's reference data: WS 363 data elements, value sets and crosswalks.

All of it is reviewed data under ``standards/data/`` (CSV), loaded here; nothing is hard-coded.
Each value set records its code system, edition and verification status (see
``../shared/standards-notes.md``), so a consumer can tell a GB table from a hisx-local one.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

DATA_DIR = Path(str(resources.files("hisx.standards"))) / "data"

DE_ID_RE = re.compile(r"^(DE\d{2}\.\d{2}\.\d{3}\.\d{2}|HISX\.\d{2}\.\d{3})$")
DATA_TYPES = ("S1", "S2", "S3", "L", "N", "D", "DT", "T", "BY")


@dataclass(frozen=True)
class DataElement:
    """One data element: a WS 363-2011 id (or a documented hisx-local ``HISX.`` id)."""

    de_id: str
    name_zh: str
    name_en: str
    type: str
    format: str
    value_set: str | None
    edition: str
    status: str
    source: str
    ws_t_2023_id: str | None = None
    note: str = ""


@dataclass(frozen=True)
class ValueSet:
    """A code list with its code system and edition; ``codes`` maps code -> Chinese meaning."""

    name: str
    title: str
    code_system: str
    edition: str
    status: str
    source: str
    note: str
    codes: dict[str, str] = field(default_factory=dict)
    meanings_en: dict[str, str] = field(default_factory=dict)

    def __contains__(self, code: object) -> bool:
        return code in self.codes


@dataclass(frozen=True)
class Crosswalk:
    """An explicit mapping between two competing code systems for the same concept."""

    name: str
    from_value_set: str
    to_value_set: str
    mapping: dict[str, str]
    notes: dict[str, str]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


@cache
def data_elements() -> dict[str, DataElement]:
    """All data elements used by hisx datasets, keyed by id."""
    out: dict[str, DataElement] = {}
    for r in _rows(DATA_DIR / "data_elements.csv"):
        if r["de_id"] in out:
            raise ValueError(f"duplicate data element {r['de_id']}")
        out[r["de_id"]] = DataElement(
            de_id=r["de_id"], name_zh=r["name_zh"], name_en=r["name_en"], type=r["type"],
            format=r["format"], value_set=r["value_set"] or None, edition=r["edition"],
            status=r["status"], source=r["source"], ws_t_2023_id=r["ws_t_2023_id"] or None,
            note=r["note"],
        )
    return out


@cache
def value_sets() -> dict[str, ValueSet]:
    """All value sets keyed by hisx name (``gender``, ``id_type``, ``route`` ...)."""
    codes: dict[str, dict[str, str]] = {}
    en: dict[str, dict[str, str]] = {}
    for r in _rows(DATA_DIR / "value_sets.csv"):
        vs = codes.setdefault(r["value_set"], {})
        if r["code"] in vs:
            raise ValueError(f"duplicate code {r['code']} in value set {r['value_set']}")
        vs[r["code"]] = r["meaning_zh"]
        en.setdefault(r["value_set"], {})[r["code"]] = r["meaning_en"]
    out: dict[str, ValueSet] = {}
    for r in _rows(DATA_DIR / "value_set_index.csv"):
        out[r["value_set"]] = ValueSet(
            name=r["value_set"], title=r["name"], code_system=r["code_system"],
            edition=r["edition"], status=r["status"], source=r["source"], note=r["note"],
            codes=codes.get(r["value_set"], {}), meanings_en=en.get(r["value_set"], {}),
        )
    missing = set(codes) - set(out)
    if missing:
        raise ValueError(f"value sets without an index entry: {sorted(missing)}")
    return out


def value_set(name: str) -> ValueSet:
    """One value set by name; KeyError names the known ones."""
    vs = value_sets()
    if name not in vs:
        raise KeyError(f"unknown value set {name!r}; known: {sorted(vs)}")
    return vs[name]


@cache
def crosswalks() -> dict[str, Crosswalk]:
    """Crosswalk tables ``data/crosswalks/<from>__<to>.csv`` keyed by file stem."""
    out: dict[str, Crosswalk] = {}
    for path in sorted((DATA_DIR / "crosswalks").glob("*.csv")):
        src, dst = path.stem.split("__")
        rows = _rows(path)
        out[path.stem] = Crosswalk(
            name=path.stem, from_value_set=src, to_value_set=dst,
            mapping={r["from_code"]: r["to_code"] for r in rows},
            notes={r["from_code"]: r["note"] for r in rows},
        )
    return out


def crosswalk(from_value_set: str, to_value_set: str) -> Crosswalk:
    """The crosswalk between two code systems, e.g. ``crosswalk('route_legacy', 'route')``."""
    return crosswalks()[f"{from_value_set}__{to_value_set}"]


# --- ICD-10 (疾病分类代码国家临床版 2.0 format, standards-notes §6) -------------------------------
ICD10_CODE_SYSTEM = "ICD-10 疾病分类代码国家临床版 2.0"
ICD10_EDITION = "国家临床版 2.0 (2022 汇总版); format verified over 33,304 OPENDRG codes"
ICD10_PATTERN = r"^[A-Z]\d{2}(\.[0-9x]\d{2}(x\d{3})?)?(\+[A-Z]\d{2}(\.\d)?\*)?$"
#: Chronic-disease groups by ICD-10 category range (inclusive, 3-character categories).
CHRONIC_GROUPS: dict[str, tuple[str, str]] = {"HTN": ("I10", "I15"), "DM": ("E10", "E14")}
