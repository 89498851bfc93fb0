"""Local-code maps: reviewed CSVs per HIS vendor, optionally overridden per center.

Layout (under ``hisx/standards/maps/``)::

    VERSION                                  map version carried by every std row
    vendors/<vendor>/<map>.csv               local_code,standard_code,code_system,note
    centers/<org_code>/<map>.csv             same columns; rows override the vendor's
    centers/<org_code>/vendor.txt            optional: the center's vendor, when not given

``<map>`` is the target value set (``gender``, ``route``, ``department`` ...) or ``drug`` for
the drug catalog. Adding a center is adding files (or nothing, when its vendor's maps fit).
Lookup keys are compared after NFKC + strip + casefold, so ``Ｍ``, ``m `` and ``M`` agree.
"""

from __future__ import annotations

import csv
import os
import unicodedata
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from hisx.standards.catalog import crosswalks, value_sets

MAPS_DIR = Path(str(resources.files("hisx.standards"))) / "maps"
COLUMNS = ("local_code", "standard_code", "code_system", "note")


class MapError(ValueError):
    """A map file is malformed (bad header, duplicate local code, unknown vendor)."""


def map_key(v: object) -> str | None:
    """The comparison key of a local code."""
    if v is None or (isinstance(v, float) and v != v):
        return None
    s = unicodedata.normalize("NFKC", str(v)).strip().casefold()
    return s or None


@dataclass(frozen=True)
class CodeMap:
    """One local -> standard map; ``sources`` says which file each entry came from."""

    name: str
    mapping: dict[str, str] = field(default_factory=dict)
    code_system: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    originals: dict[str, str] = field(default_factory=dict)  # file spelling -> standard code

    def map_series(self, s: pd.Series) -> pd.Series:
        """Standard codes for a Series of local codes (None where absent or unmapped)."""
        if len(s) and pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty"):
            # text: look up each distinct value once, then spread back (codes repeat a lot)
            codes, uniques = pd.factorize(s.astype(object), use_na_sentinel=True)
            std = self.map_values(uniques.tolist())
            table = np.array(std + [None], dtype=object)  # code -1 (null) -> None
            return pd.Series(table[codes], index=s.index, dtype=object)
        keys = pd.Series([map_key(x) for x in s.to_numpy(dtype=object)], index=s.index,
                         dtype=object)
        found = keys.isin(list(self.mapping))
        return keys.map(self.mapping).astype(object).where(found, None)

    def map_values(self, values: list[str]) -> list[str | None]:
        """Standard codes of distinct local text values (None where unmapped)."""
        m = self.mapping
        return [m.get(unicodedata.normalize("NFKC", x).strip().casefold()) for x in values]


@dataclass(frozen=True)
class MapSet:
    """All maps for one center: its vendor's files with the center's overrides applied."""

    version: str
    vendor: str
    org_code: str
    maps: dict[str, CodeMap]

    def get(self, name: str) -> CodeMap:
        if name not in self.maps:
            raise MapError(f"no map {name!r} for vendor {self.vendor!r} / center "
                           f"{self.org_code!r}; have {sorted(self.maps)}")
        return self.maps[name]

    def __contains__(self, name: object) -> bool:
        return name in self.maps


def read_map_file(path: Path) -> list[dict[str, str]]:
    """Rows of one map CSV, checked: exact header, no duplicate (normalized) local codes."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise MapError(f"{path}: header must be {','.join(COLUMNS)}, got {reader.fieldnames}")
        rows = list(reader)
    seen: set[str] = set()
    for i, r in enumerate(rows, start=2):
        k = map_key(r["local_code"])
        if k is None or not (r["standard_code"] or "").strip():
            raise MapError(f"{path}:{i}: empty local_code or standard_code")
        if k in seen:
            raise MapError(f"{path}:{i}: duplicate local_code {r['local_code']!r}")
        seen.add(k)
    return rows


def map_version(maps_dir: Path = MAPS_DIR) -> str:
    return (maps_dir / "VERSION").read_text(encoding="utf-8").strip()


def vendors(maps_dir: Path = MAPS_DIR) -> list[str]:
    return sorted(p.name for p in (maps_dir / "vendors").iterdir() if p.is_dir())


def center_vendor(org_code: str, maps_dir: Path = MAPS_DIR) -> str | None:
    """The vendor a center declared in ``centers/<org_code>/vendor.txt``, if any."""
    p = maps_dir / "centers" / org_code / "vendor.txt"
    return p.read_text(encoding="utf-8").strip() if p.is_file() else None


def _crosswalked(target: str, code_system: str, code: str) -> str:
    """A row may give its standard code in a competing system (``code_system`` names it, e.g.
    ``NHSA insutype``); translate it through the explicit crosswalk into the target value set.
    """
    for cw in crosswalks().values():
        if cw.to_value_set != target:
            continue
        src = value_sets()[cw.from_value_set]
        if code_system in (src.code_system, src.edition, src.name):
            if code not in cw.mapping:
                raise MapError(f"{code_system} code {code!r} has no crosswalk to {target}")
            return cw.mapping[code]
    return code


def _merge(into: dict[str, CodeMap], directory: Path) -> None:
    if not directory.is_dir():
        return
    for path in sorted(directory.glob("*.csv")):
        cm = into.setdefault(path.stem, CodeMap(path.stem))
        for r in read_map_file(path):
            k = map_key(r["local_code"])
            assert k is not None
            system = r["code_system"].strip()
            code = _crosswalked(path.stem, system, r["standard_code"].strip())
            cm.mapping[k] = code
            cm.code_system[k] = system
            cm.sources[k] = str(path.relative_to(directory.parent.parent))
            for orig in [o for o in cm.originals if map_key(o) == k]:
                del cm.originals[orig]
            cm.originals[r["local_code"].strip()] = code


@cache
def _load(org_code: str, vendor: str, maps_dir: Path, fingerprint: tuple = ()) -> MapSet:
    vdir = maps_dir / "vendors" / vendor
    if not vdir.is_dir():
        raise MapError(f"unknown HIS vendor {vendor!r}; known: {vendors(maps_dir)}")
    maps: dict[str, CodeMap] = {}
    _merge(maps, vdir)
    if org_code:
        _merge(maps, maps_dir / "centers" / org_code)
    return MapSet(map_version(maps_dir), vendor, org_code, maps)


def load_maps(org_code: str, vendor: str | None = None, maps_dir: Path | None = None) -> MapSet:
    """The maps for a center: ``vendors/<vendor>/*`` overridden by ``centers/<org_code>/*``.

    ``vendor`` may be omitted when the center declares it in ``centers/<org_code>/vendor.txt``.
    """
    d = maps_dir or Path(os.environ.get("HISX_MAPS_DIR") or MAPS_DIR)
    v = vendor or center_vendor(org_code, d)
    if not v:
        raise MapError(f"center {org_code!r} has no vendor: pass vendor= or add "
                       f"maps/centers/{org_code}/vendor.txt")
    return _load(org_code, v, d, _fingerprint(d, v, org_code))


def maps_group(org_code: str, vendor: str | None = None, maps_dir: Path | None = None
               ) -> tuple[str | None, str | None]:
    """Centers of one group use maps of equal content: the same vendor and no overrides of
    their own (a center with ``centers/<org_code>/*.csv`` is a group alone). Their rows can
    be standardized in one batch."""
    d = maps_dir or Path(os.environ.get("HISX_MAPS_DIR") or MAPS_DIR)
    own = d / "centers" / org_code
    return (vendor or center_vendor(org_code, d),
            org_code if own.is_dir() and any(own.glob("*.csv")) else None)


def _fingerprint(maps_dir: Path, vendor: str, org_code: str) -> tuple:
    """File names and modification times of the maps a center uses: an edited map file (the
    fix before a quarantine replay) invalidates the cached MapSet."""
    files = [maps_dir / "VERSION"]
    for sub in (maps_dir / "vendors" / vendor, maps_dir / "centers" / org_code):
        if sub.is_dir():
            files += sorted(sub.glob("*.csv"))
    return tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files if f.exists())
