"""The data dictionary lists every dataset field with its data element and value-set codes."""

from __future__ import annotations

from html.parser import HTMLParser

from hisx.standards.datasets import DATASETS
from hisx.standards.dictionary import write_dictionary


def test_write_dictionary(tmp_path):
    md, page = write_dictionary(tmp_path / "dd")
    text = md.read_text(encoding="utf-8")
    for name, spec in DATASETS.items():
        assert f"## {name}" in text
        for f in spec.all_fields:
            assert f"| {f.name} | {f.de} |" in text
    assert "| 11 | 满族 |" in text and "GB 3304-1991" in text
    assert "CV06.00.102" in text and "route_legacy" in text
    doc = page.read_text(encoding="utf-8")
    HTMLParser().feed(doc)
    assert doc.count("<table>") >= len(DATASETS) and "DE02.01.040.00" in doc
