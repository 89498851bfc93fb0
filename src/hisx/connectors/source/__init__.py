"""Source-database connectors: replica-aware, commit-safe, gentle incremental extraction."""

from hisx.connectors.source.reader import ReadStats, TableReader

__all__ = ["ReadStats", "TableReader"]
