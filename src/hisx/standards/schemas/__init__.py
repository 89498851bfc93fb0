"""The published JSON Schemas (draft 2020-12), one ``<dataset>.schema.json`` per std dataset.

They are generated from :mod:`hisx.standards.datasets` and committed; a test keeps both equal.
"""

from __future__ import annotations

from hisx.standards.datasets import SCHEMA_DIR, json_schema, load_schema, write_schemas

__all__ = ["SCHEMA_DIR", "json_schema", "load_schema", "write_schemas"]
