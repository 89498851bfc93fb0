"""What several benchmarks share: peak RSS of the running process, the sampler of the longest
open source transaction, and median/min/max summaries."""

from __future__ import annotations

import statistics
import threading
from collections.abc import Callable


def peak_rss_mb(pid: int | str = "self") -> float:
    """VmHWM: a process's own peak RSS (ru_maxrss would include the parent's at exec)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


class ActivitySampler(threading.Thread):
    """Longest open transaction of the sessions named ``app`` on a server, every 50 ms."""

    def __init__(self, dsn: str, app: str) -> None:
        super().__init__(daemon=True)
        self.dsn, self.app, self.longest = dsn, app, 0.0
        self._stop_evt = threading.Event()

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as c:
            while not self._stop_evt.is_set():
                (v,) = c.execute(
                    "SELECT coalesce(extract(epoch FROM max(clock_timestamp() - xact_start)), 0)"
                    " FROM pg_stat_activity WHERE application_name = %s AND xact_start IS NOT NULL",
                    (self.app,)).fetchone()
                self.longest = max(self.longest, float(v))
                self._stop_evt.wait(0.05)

    def stop(self) -> float:
        self._stop_evt.set()
        self.join()
        return self.longest


def summary(runs: list[dict], key: str) -> dict:
    vals = [r[key] for r in runs]
    return {"median": round(statistics.median(vals), 3), "min": round(min(vals), 3),
            "max": round(max(vals), 3)}


class PhaseRss(threading.Thread):
    """Peak RSS of each phase of a run (``/proc/<pid>/status`` every 0.2 s): where the memory
    goes, not only how much. ``phase(name)`` starts the next phase. ``others`` gives the ids
    of helper processes (standardization's worker) whose RSS counts with this one's: the
    peaks are of the processes together, at the same moment."""

    def __init__(self, others: Callable[[], list[int]] = lambda: []) -> None:
        super().__init__(daemon=True)
        self.current = "start"
        self.peaks: dict[str, float] = {}
        self.others = others
        self._stop = threading.Event()

    def phase(self, name: str) -> None:
        self._sample()
        self.current = name

    @staticmethod
    def _rss_kb(pid: int | str) -> int:
        try:
            with open(f"/proc/{pid}/status") as f:
                return next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS"))
        except (OSError, StopIteration):  # a helper that just ended
            return 0

    def _sample(self) -> None:
        kb = self._rss_kb("self") + sum(self._rss_kb(p) for p in self.others())
        mb = round(kb / 1024)
        self.peaks[self.current] = max(self.peaks.get(self.current, 0), mb)

    def run(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def stop(self) -> dict[str, float]:
        self._sample()
        self._stop.set()
        return self.peaks


def require_disk(rig, src_db: str, where, copies: float, what: str) -> None:
    """Stop with a clear message before a run that cannot fit: ``copies`` × the source
    database's size must be free on the disk holding ``where`` (the rig's data directory and
    the bench cache share it). A full disk otherwise surfaces as a failed DuckDB commit or a
    crashed standby halfway through a 30-minute run."""
    import shutil

    ((size,),) = rig.primary("SELECT pg_database_size(%s)", (src_db,))
    need, free = copies * int(size), shutil.disk_usage(where).free
    if free < need:
        raise SystemExit(
            f"{what} needs ~{need / 2**30:.0f} GiB free on {where} ({copies:g} × the "
            f"{size / 2**30:.1f} GiB source {src_db}); {free / 2**30:.0f} GiB are free. Drop "
            "kept scratch state first (bench/profile_hour.py --reset, bench/.cache/*.duckdb).")
