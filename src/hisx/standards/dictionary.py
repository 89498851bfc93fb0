"""Data dictionary generator: every std dataset's fields with data element and value set.

``write_dictionary(out_dir)`` writes ``data-dictionary.md`` and ``data-dictionary.html`` from
the same specs the JSON Schemas come from, so the documentation cannot drift from the contract.
"""

from __future__ import annotations

import html
from pathlib import Path

from hisx.standards.catalog import data_elements, value_set, value_sets
from hisx.standards.datasets import DATASETS, Field
from hisx.standards.maps import map_version

HEADERS = ("field", "data element", "name", "type / format", "value set", "required")


def _row(f: Field) -> tuple[str, ...]:
    de = data_elements()[f.de]
    vs = ""
    if f.value_set:
        v = value_set(f.value_set)
        vs = f"{f.value_set} ({v.code_system}, {v.edition}; {v.status})"
    elif f.code_system:
        vs = f.code_system
    return (f.name, f.de, f"{de.name_zh} / {de.name_en}", f"{de.type} {de.format}", vs,
            "yes" if f.required else "")


def _codes_md(name: str) -> list[str]:
    v = value_set(name)
    out = [f"### {name} — {v.title}", "",
           f"Code system **{v.code_system}**, edition {v.edition}, status *{v.status}*. "
           f"Source: {v.source}." + (f" {v.note}" if v.note else ""), "",
           "| code | meaning | meaning (en) |", "|---|---|---|"]
    out += [f"| {c} | {m} | {v.meanings_en.get(c, '')} |" for c, m in v.codes.items()]
    return out + [""]


def markdown() -> str:
    lines = ["# hisx data dictionary", "",
             f"Standardized datasets (std_<dataset>), map version {map_version()}. Data element "
             "ids are WS 363-2011 (`DE…`, edition recorded per element) or documented hisx-local "
             "ids (`HISX.…`).", ""]
    used: list[str] = []
    for name, spec in DATASETS.items():
        lines += [f"## {name}", "", f"{spec.title}. Source table `{spec.source_table}`, "
                  f"business time `{spec.business_time}`, natural key "
                  f"`({', '.join(spec.natural_key)})`.", "",
                  "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
        for f in spec.all_fields:
            lines.append("| " + " | ".join(_row(f)) + " |")
            if f.value_set and f.value_set not in used:
                used.append(f.value_set)
        lines.append("")
    lines += ["## Value sets", ""]
    for name in used:
        lines += _codes_md(name)
    others = [n for n in value_sets() if n not in used]
    if others:
        lines += ["## Competing code systems (crosswalk sources)", ""]
        for name in others:
            lines += _codes_md(name)
    return "\n".join(lines) + "\n"


def _table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_page() -> str:
    parts = ["<!doctype html><html lang=\"zh\"><head><meta charset=\"utf-8\">",
             "<title>hisx data dictionary</title><style>body{font-family:sans-serif;margin:2em}"
             "table{border-collapse:collapse;margin-bottom:1.5em}td,th{border:1px solid #ccc;"
             "padding:2px 6px;text-align:left}</style></head><body>",
             f"<h1>hisx data dictionary</h1><p>Map version {html.escape(map_version())}.</p>"]
    for name, spec in DATASETS.items():
        parts.append(f"<h2 id=\"{name}\">{html.escape(name)}</h2><p>{html.escape(spec.title)}; "
                     f"source <code>{spec.source_table}</code>, business time "
                     f"<code>{spec.business_time}</code>.</p>")
        parts.append(_table(HEADERS, [_row(f) for f in spec.all_fields]))
    parts.append("<h2>Value sets</h2>")
    for name, v in value_sets().items():
        parts.append(f"<h3 id=\"vs-{name}\">{html.escape(name)} — {html.escape(v.title)}</h3>"
                     f"<p>{html.escape(v.code_system)}, {html.escape(v.edition)}; "
                     f"<em>{html.escape(v.status)}</em>. {html.escape(v.note)}</p>")
        parts.append(_table(("code", "meaning", "meaning (en)"),
                            [(c, m, v.meanings_en.get(c, "")) for c, m in v.codes.items()]))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_dictionary(out_dir: str | Path) -> list[Path]:
    """Write ``data-dictionary.md`` and ``data-dictionary.html`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, page = out / "data-dictionary.md", out / "data-dictionary.html"
    md.write_text(markdown(), encoding="utf-8")
    page.write_text(html_page(), encoding="utf-8")
    return [md, page]
