"""Arrow tables handed between the main process and the std worker as IPC files in memory.

Pickled through the worker's pipe, a batch's ~20 MB of std rows cost 147-159 ms from the
worker's send to the main process's unpickled frame (the pipe's copies, and the unpickling
on the executor's manager thread, which holds the main process's GIL); written as an Arrow
IPC file in ``/dev/shm`` and memory-mapped by the reader, 28-31 ms. The reader's table points
into the mapping (no copy); the file is unlinked when taken, and its memory is freed when the
last buffer is dropped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass

import pyarrow as pa

#: free space under which ``/dev/shm`` is not used (a container's default is 64 MB)
SHM_MIN_FREE = 1 << 30


@dataclass(frozen=True)
class Handed:
    """A table written to ``path`` for the other process to :func:`take` (it pickles small)."""

    path: str
    rows: int


def base_dir() -> str:
    """Where handover directories go: ``HISX_STD_HANDOVER_DIR``, else ``/dev/shm`` (memory)
    when it has :data:`SHM_MIN_FREE` free, else the temporary directory."""
    explicit = os.environ.get("HISX_STD_HANDOVER_DIR")
    if explicit:
        if not os.path.isdir(explicit):
            raise ValueError(f"HISX_STD_HANDOVER_DIR is not a directory: {explicit!r}")
        return explicit
    shm = "/dev/shm"
    try:
        if os.access(shm, os.W_OK) and shutil.disk_usage(shm).free >= SHM_MIN_FREE:
            return shm
    except OSError:
        pass
    return tempfile.gettempdir()


def new_dir() -> str:
    """A directory of this process's handovers (removed by :func:`remove_dir`)."""
    return tempfile.mkdtemp(prefix=f"hisx-std-{os.getpid()}-", dir=base_dir())


def remove_dir(directory: str) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def put(table: pa.Table, directory: str) -> Handed:
    """Write ``table`` as an uncompressed Arrow IPC file (so the reader maps it, no copy)."""
    path = os.path.join(directory, f"{uuid.uuid4().hex}.arrow")
    try:
        with pa.OSFile(path, "wb") as f, pa.ipc.new_file(f, table.schema) as w:
            w.write_table(table)
    except BaseException:
        discard(Handed(path, table.num_rows))
        raise
    return Handed(path, table.num_rows)


def take(h: Handed) -> pa.Table:
    """The table of ``h``, mapped from its file, which is unlinked (the mapping stays while
    the table's buffers live)."""
    try:
        with pa.memory_map(h.path) as m:
            return pa.ipc.open_file(m).read_all()
    finally:
        discard(h)


def discard(h: Handed) -> None:
    """Remove a handover that will not be taken."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(h.path)
