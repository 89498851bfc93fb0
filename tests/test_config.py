"""Settings read from the environment (src/hisx/config.py)."""

from __future__ import annotations

import pytest

from hisx.config import size_bytes, size_env


def test_size_bytes_reads_decimal_and_binary_units() -> None:
    assert size_bytes("128MB") == 128e6
    assert size_bytes("1GiB") == 2**30
    assert size_bytes("1.5 GB") == 1.5e9
    assert size_bytes("512KiB") == 512 * 1024
    assert size_bytes("100B") == 100
    assert size_bytes("100MiB") < size_bytes("128MB") < size_bytes("128MiB")
    with pytest.raises(ValueError, match="size like"):
        size_bytes("lots")


def test_size_env_names_the_setting(monkeypatch) -> None:
    monkeypatch.setenv("HISX_X_MEMORY", "12 parsecs")
    with pytest.raises(ValueError, match="HISX_X_MEMORY"):
        size_env("HISX_X_MEMORY", "1GB")
    monkeypatch.delenv("HISX_X_MEMORY")
    assert size_env("HISX_X_MEMORY", "1GB") == "1GB"
