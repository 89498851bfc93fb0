"""Runtime settings from the environment, with embedded defaults under ``./.hisx``.

| variable | default | meaning |
|---|---|---|
| HISX_HOME | ./.hisx | working state: warehouse, DAGSTER_HOME, demo source, secrets |
| HISX_WAREHOUSE_URL | duckdb:///$HISX_HOME/warehouse.duckdb | warehouse (any SQLAlchemy URL) |
| HISX_SOURCES | (none) | sources file (YAML); without it the demo SQLite source is used |
| HISX_SOURCE_URL | sqlite:///$HISX_HOME/source/his.sqlite | the demo source database |
| HISX_FEED_BOOTSTRAP | (none) | Kafka bootstrap servers; without it feeds go to a local outbox |
| HISX_KAFKA_CLIENT | confluent | feed producer client: confluent (librdkafka) or kafka-python |
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path


def size_env(name: str, default: str) -> str:
    """A size setting (``512MB``, ``1GB``) from the environment, checked."""
    value = os.environ.get(name, default)
    if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]?i?B", value):
        raise ValueError(f"{name} must be a size like 512MB, not {value!r}")
    return value


def size_bytes(value: str) -> float:
    """Bytes of a checked size setting (``128MB``, ``1GiB``), for comparing two of them."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B", value)
    if not m:
        raise ValueError(f"not a size like 512MB: {value!r}")
    num, unit, binary = m.groups()
    return float(num) * (1024 if binary else 1000) ** " KMGT".index(unit or " ")


def positive_int_env(name: str, default: int) -> int:
    """A positive integer setting from the environment, checked."""
    raw = os.environ.get(name, str(default))
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{name} must be a positive integer, not {raw!r}")
    return int(raw)


def hisx_home() -> Path:
    return Path(os.environ.get("HISX_HOME", Path.cwd() / ".hisx")).resolve()


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=hisx_home)
    warehouse_url: str = ""
    source_url: str = ""
    sources_file: str | None = None
    feed_bootstrap: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        home = hisx_home()
        return cls(
            home=home,
            warehouse_url=os.environ.get(
                "HISX_WAREHOUSE_URL", f"duckdb:///{home / 'warehouse.duckdb'}"
            ),
            source_url=os.environ.get(
                "HISX_SOURCE_URL", f"sqlite:///{home / 'source' / 'his.sqlite'}"
            ),
            sources_file=os.environ.get("HISX_SOURCES") or None,
            feed_bootstrap=os.environ.get("HISX_FEED_BOOTSTRAP") or None,
        )

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def outbox_dir(self) -> Path:
        return self.home / "outbox"


def ensure_demo_pseudo_key(home: Path) -> None:
    """For the embedded default only: if ``HISX_PSEUDO_KEY`` is unset, use (or create) a
    random key in ``$HISX_HOME/secrets/pseudo.key`` (git-ignored, mode 600). Production sets
    the variable from its secret store; the repo never holds a key."""
    if os.environ.get("HISX_PSEUDO_KEY"):
        return
    import secrets

    path = home / "secrets" / "pseudo.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32), encoding="ascii")
        path.chmod(0o600)
    os.environ["HISX_PSEUDO_KEY"] = path.read_text(encoding="ascii").strip()


#: Default warn thresholds for the data-quality check: maximum quarantine rate per dataset.
DQ_DEFAULTS: dict[str, float] = {"default": 0.10}


def dq_thresholds() -> dict[str, float]:
    """Quarantine-rate thresholds per dataset: ``HISX_DQ_THRESHOLDS`` (a YAML file mapping
    dataset -> rate, with an optional ``default``) over :data:`DQ_DEFAULTS`."""
    out = dict(DQ_DEFAULTS)
    path = os.environ.get("HISX_DQ_THRESHOLDS")
    if path:
        import yaml

        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping dataset -> max quarantine rate")
        for k, v in raw.items():
            if not isinstance(v, int | float) or not 0 <= v <= 1:
                raise ValueError(f"{path}: {k}: rate must be a number in [0, 1], got {v!r}")
            out[str(k)] = float(v)
    return out
