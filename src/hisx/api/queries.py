"""Named SQL queries: the "SQL interface" over HTTP/SOAP runs only the reviewed files in
``hisx/api/queries/*.sql``, by name, with typed parameters. Callers never send SQL text.

Header of a query file (``--`` comment lines before the SQL)::

    -- name: top_drugs
    -- description: ...                 (continuation lines start with ``--   ``)
    -- param month: date required -- any day of the month
    -- param top: integer optional default 10 min 1 max 100 -- drugs per center
    -- column tenant: string            (result columns: string|integer|number|boolean|
    -- column drug_name: string null     date|datetime, ``null`` when nullable)

Rules checked when the files load (a file that breaks one is refused, not served):

* one statement, starting with ``SELECT`` or ``WITH``, no ``;``;
* it filters on ``:tenant`` (written ``(:tenant = '*' OR tenant = :tenant)``); ``tenant`` is
  never a declared parameter: it is bound from the API key (``*`` for the region key, or the
  center the region key asks for);
* the parameters used in the SQL are exactly the declared ones (+ ``tenant``).

Optional parameters without a default are bound as ``''`` (strings) so the SQL can write
``(:p = '' OR col = :p)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from typing import Any

from hisx.connectors.warehouse import _PARAM

KINDS = ("string", "integer", "number", "boolean", "date", "datetime")
_PARAM_LINE = re.compile(
    r"^param\s+([a-z_][a-z0-9_]*)\s*:\s*(\w+)\s+(required|optional)"
    r"(?:\s+default\s+(\S+))?(?:\s+min\s+(-?\d+))?(?:\s+max\s+(-?\d+))?\s*(?:--\s*(.*))?$")
_COLUMN_LINE = re.compile(r"^column\s+([a-z_][a-z0-9_]*)\s*:\s*(\w+)(\s+null)?\s*$")


@dataclass(frozen=True)
class Param:
    name: str
    kind: str
    required: bool
    default: Any = None
    minimum: int | None = None
    maximum: int | None = None
    description: str = ""

    def bound_default(self) -> Any:
        if self.default is not None:
            return self.default
        return "" if self.kind == "string" else None


@dataclass(frozen=True)
class NamedQuery:
    name: str
    description: str
    params: tuple[Param, ...]
    columns: tuple[tuple[str, str, bool], ...]
    sql: str

    def row_schema(self) -> dict[str, Any]:
        props = {}
        for name, kind, nullable in self.columns:
            p: dict[str, Any] = ({"type": "string", "format": kind.replace("datetime",
                                                                           "date-time")}
                                 if kind in ("date", "datetime") else {"type": kind})
            if nullable:
                p["type"] = [p["type"], "null"]
            props[name] = p
        return {"type": "object", "properties": props, "required": list(props),
                "additionalProperties": False}


def _coerce_default(kind: str, text: str) -> Any:
    return {"integer": int, "number": float, "date": date.fromisoformat,
            "boolean": lambda s: s.lower() == "true"}.get(kind, str)(text)


def parse(text: str, filename: str = "<query>") -> NamedQuery:
    """Parse and check one query file."""
    header, body, meta = [], [], True
    for line in text.splitlines():
        if meta and line.startswith("--"):
            header.append(line[2:])
        else:
            meta = False
            body.append(line)
    sql = "\n".join(body).strip()
    name, desc, params, columns = "", [], [], []
    for raw in header:
        h = raw.strip()
        if h.startswith("name:"):
            name = h[5:].strip()
        elif h.startswith("description:"):
            desc.append(h[12:].strip())
        elif h.startswith("param "):
            m = _PARAM_LINE.match(h)
            if not m or m.group(2) not in KINDS:
                raise ValueError(f"{filename}: bad param line {h!r}")
            pn, kind, req, dflt, lo, hi, pdesc = m.groups()
            params.append(Param(pn, kind, req == "required",
                                _coerce_default(kind, dflt) if dflt else None,
                                int(lo) if lo else None, int(hi) if hi else None,
                                (pdesc or "").strip()))
        elif h.startswith("column "):
            m = _COLUMN_LINE.match(h)
            if not m or m.group(2) not in KINDS:
                raise ValueError(f"{filename}: bad column line {h!r}")
            columns.append((m.group(1), m.group(2), bool(m.group(3))))
        elif raw.startswith("   ") and desc:
            desc.append(h)
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name or ""):
        raise ValueError(f"{filename}: missing or bad '-- name:'")
    if ";" in sql or not re.match(r"(?is)^\s*(select|with)\b", sql):
        raise ValueError(f"{filename}: one SELECT/WITH statement only, no ';'")
    used = set(_PARAM.findall(sql))
    declared = {p.name for p in params}
    if "tenant" in declared:
        raise ValueError(f"{filename}: 'tenant' is bound from the API key, never declared")
    if "tenant" not in used:
        raise ValueError(f"{filename}: the query must filter on :tenant")
    if used - {"tenant"} != declared:
        raise ValueError(f"{filename}: SQL parameters {sorted(used - {'tenant'})} != declared "
                         f"{sorted(declared)}")
    if not columns:
        raise ValueError(f"{filename}: no '-- column' lines")
    return NamedQuery(name, " ".join(desc), tuple(params), tuple(columns), sql)


@cache
def named_queries() -> dict[str, NamedQuery]:
    out = {}
    for f in sorted(resources.files("hisx.api").joinpath("queries").iterdir(),
                    key=lambda p: p.name):
        if f.name.endswith(".sql"):
            q = parse(f.read_text("utf-8"), f.name)
            if q.name != f.name[:-4]:
                raise ValueError(f"{f.name}: name {q.name!r} differs from the file name")
            out[q.name] = q
    return out


def bind(q: NamedQuery, values: dict[str, Any], tenant: str) -> dict[str, Any]:
    """Parameters for one run: declared values (defaults filled) + the key's tenant."""
    out: dict[str, Any] = {}
    for p in q.params:
        v = values.get(p.name)
        out[p.name] = p.bound_default() if v is None else v
    out["tenant"] = tenant
    return out
