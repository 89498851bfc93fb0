"""What a simulation run produced: counts per table and center, every injected defect, offline windows."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: The defect kinds, each recorded with (table, pk, org_code, detail) for every occurrence.
DEFECT_KINDS: tuple[str, ...] = (
    "id_missing", "id_checksum", "id_birth_mismatch", "id_gender_mismatch", "unmapped_dept",
    "unmapped_drug", "implausible_bp", "implausible_glucose", "future_time", "duplicate_row",
    "test_patient", "whitespace", "fullwidth_digits",
)


@dataclass
class Manifest:
    """JSON-serializable record of one ``simulate`` or ``append_activity`` run.

    counts: {table: {org_code: rows inserted}} (for ``simulate``: the table contents);
    updated: {table: {org_code: existing rows updated}} (``append_activity`` only);
    defects: {kind: [{"table", "pk", "org_code", "detail"}]};
    offline: [{"org_code", "start", "hours", "end", "delayed": {table: rows}}];
    row_version / updated_at: {"min", "max"} of the rows this run wrote.
    """

    kind: str
    seed: int
    params: dict
    centers: list[dict] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    updated: dict[str, dict[str, int]] = field(default_factory=dict)
    defects: dict[str, list[dict]] = field(default_factory=lambda: {k: [] for k in DEFECT_KINDS})
    offline: list[dict] = field(default_factory=list)
    row_version: dict[str, int | None] = field(default_factory=lambda: {"min": None, "max": None})
    updated_at: dict[str, str | None] = field(default_factory=lambda: {"min": None, "max": None})
    elapsed_s: float = 0.0

    @property
    def total_rows(self) -> int:
        return sum(sum(v.values()) for v in self.counts.values())

    def defect_pks(self, kind: str, table: str | None = None) -> set[int]:
        return {d["pk"] for d in self.defects.get(kind, []) if table in (None, d["table"])}

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(asdict(self), ensure_ascii=False, indent=1)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> Manifest:
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            text = Path(text_or_path).read_text(encoding="utf-8")
        return cls(**json.loads(text))
