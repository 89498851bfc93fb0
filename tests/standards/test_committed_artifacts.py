"""What the repo publishes is what the code generates: the JSON Schemas (the contract of the
marts, API and feeds) and the analysts' data dictionary. A change to the standard without
regenerating them (`make docs`) fails here, in CI."""

from __future__ import annotations

import json
from pathlib import Path

from hisx.standards.datasets import DATASETS, SCHEMA_DIR, json_schema
from hisx.standards.dictionary import write_dictionary

ROOT = Path(__file__).resolve().parents[2]


def test_committed_schemas_equal_the_standard() -> None:
    for name in DATASETS:
        committed = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))
        assert committed == json_schema(name), f"regenerate {name}.schema.json"


def test_committed_data_dictionary_is_current(tmp_path) -> None:
    fresh = {p.name: p.read_text(encoding="utf-8") for p in write_dictionary(tmp_path)}
    for fname, text in fresh.items():
        committed = ROOT / "docs" / "data-dictionary" / fname
        assert committed.exists(), f"run `make docs` to write {committed}"
        assert committed.read_text(encoding="utf-8") == text, f"run `make docs`: {fname} is stale"
