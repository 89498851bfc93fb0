"""Arrow tables handed between processes as IPC files: what is taken equals what was put, the
file is gone once taken (its table lives on), and where the files go."""

from __future__ import annotations

import gc
import os
from datetime import date
from decimal import Decimal

import pyarrow as pa
import pytest

from hisx.pipelines import handover


def test_a_taken_table_equals_the_put_one_and_outlives_its_file(tmp_path) -> None:
    t = pa.table({"s": ["a", None, "张"], "d": [date(2026, 1, 2), None, date(1, 1, 1)],
                  "m": pa.array([Decimal("1.20"), None, Decimal("3.00")], pa.decimal128(9, 2)),
                  "n": pa.array(range(3), pa.int64())})
    d = handover.new_dir()
    try:
        h = handover.put(t, d)
        assert os.listdir(d) == [os.path.basename(h.path)] and h.rows == 3
        got = handover.take(h)
        assert os.listdir(d) == []  # unlinked when taken
        gc.collect()
        assert got.equals(t) and got.schema == t.schema
        handover.discard(h)  # already gone: nothing to do
    finally:
        handover.remove_dir(d)
    assert not os.path.exists(d)


def test_handover_directory(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("HISX_STD_HANDOVER_DIR", str(tmp_path))
    assert handover.base_dir() == str(tmp_path)
    d = handover.new_dir()
    assert os.path.dirname(d) == str(tmp_path) and f"-{os.getpid()}-" in d
    monkeypatch.setenv("HISX_STD_HANDOVER_DIR", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="HISX_STD_HANDOVER_DIR"):
        handover.base_dir()
    monkeypatch.delenv("HISX_STD_HANDOVER_DIR")
    # /dev/shm with room, else the temporary directory (a container's 64 MB /dev/shm)
    monkeypatch.setattr(handover, "SHM_MIN_FREE", 1 << 62)
    assert handover.base_dir() != "/dev/shm"
    monkeypatch.setattr(handover, "SHM_MIN_FREE", 0)
    assert handover.base_dir() == ("/dev/shm" if os.access("/dev/shm", os.W_OK)
                                   else handover.tempfile.gettempdir())
