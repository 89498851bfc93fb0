"""What the standardization reports: the center it ran for and its per-center figures."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Tenant:
    org_code: str
    vendor: str
    name: str = ""


@dataclass
class StdStats:
    dataset: str
    tenant: str
    rows_in: int = 0
    standardized: int = 0
    quarantined: int = 0
    deduplicated: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    map_version: str | None = None
    rv_from: int | None = None  # row-version range of the extraction loads consumed
    rv_to: int | None = None
    endpoint: str = ""  # where those loads were read (replica / URL)

    @property
    def conserved(self) -> bool:
        return self.rows_in == self.standardized + self.quarantined + self.deduplicated

    def add(self, other: StdStats) -> None:
        """Fold one chunk's figures into the tenant's."""
        self.rows_in += other.rows_in
        self.standardized += other.standardized
        self.quarantined += other.quarantined
        self.deduplicated += other.deduplicated
        for k, v in other.reasons.items():
            self.reasons[k] = self.reasons.get(k, 0) + v
        self.map_version = other.map_version or self.map_version
        self.rv_from, self.rv_to = other.rv_from, other.rv_to
        self.endpoint = other.endpoint or self.endpoint
