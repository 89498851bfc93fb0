"""The PostgreSQL primary + hot standby rig (``scripts/rig/pg.sh``) from Python, for the
tests and the extraction benchmark: the SQL Server AG stand-in of infra-notes §1.

``acquire()`` takes the rig from the environment when ``make test`` / ``make bench`` started
one (``HISX_PG_*`` set), else starts a *private* rig on two free loopback ports under
``$HISX_RIG/private-<pid>`` and ``release()`` stops and removes exactly that one: a direct
pytest run never shares a rig another engineer's run may stop, restart or fill.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]  # the repository (editable install / src layout)
VARS = ("HISX_PG_PRIMARY_URL", "HISX_PG_STANDBY_URL", "HISX_PG_PRIMARY_ODBC", "HISX_PG_STANDBY_ODBC")


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (all sockets held open while choosing)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _script(cmd: str, env: dict) -> dict:
    """Run a pg.sh function; its log goes to stderr, the HISX_PG_* env it exports comes back."""
    out = subprocess.run(
        ["bash", "-c", f"source scripts/rig/pg.sh; {cmd} >&2; env -0"], cwd=ROOT, env=env,
        check=True, stdout=subprocess.PIPE).stdout.decode()
    return dict(kv.split("=", 1) for kv in out.split("\0") if kv.startswith("HISX_PG_"))


class Rig:
    """Connection details and drills (stop/start the standby) of one running rig."""

    def __init__(self, env: dict, *, started: bool = False) -> None:
        self.env = env
        self.started = started
        self.primary_dsn = env["HISX_PG_PRIMARY_URL"].replace("postgresql+psycopg", "postgresql")
        self.standby_dsn = env["HISX_PG_STANDBY_URL"].replace("postgresql+psycopg", "postgresql")
        self.pg_bin = env.get("HISX_PG_BIN", "/usr/lib/postgresql/15/bin")
        self.base = env.get("HISX_PG_RIG_DIR") or str(
            Path(env.get("HISX_RIG", ROOT / ".rig")) / "pg")

    # -- SQL -------------------------------------------------------------------------------
    def primary(self, sql: str, params=None):
        return self._run(self.primary_dsn, sql, params)

    def standby(self, sql: str, params=None):
        return self._run(self.standby_dsn, sql, params)

    @staticmethod
    def _run(dsn: str, sql: str, params):
        import psycopg

        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as c:
            cur = c.execute(sql, params)
            return cur.fetchall() if cur.description else None

    def caught_up(self, timeout: float = 30) -> None:
        """Wait until the standby replayed everything the primary has written so far (the
        2-core machine is shared: a generous timeout, polled every 50 ms)."""
        (lsn,) = self.primary("select pg_current_wal_lsn()::text")[0]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.standby("select pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))[0][0]:
                return
            time.sleep(0.05)
        raise TimeoutError(f"standby did not replay {lsn} within {timeout}s")

    # -- drills ----------------------------------------------------------------------------
    def _pg_ctl(self, *args: str, check: bool = True) -> int:
        return subprocess.run(["runuser", "-u", "postgres", "--", f"{self.pg_bin}/pg_ctl", *args],
                              check=check, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode

    def standby_running(self) -> bool:
        return self._pg_ctl("-D", f"{self.base}/standby", "status", check=False) == 0

    def stop_standby(self) -> None:
        if self.standby_running():
            self._pg_ctl("-D", f"{self.base}/standby", "-m", "immediate", "-w", "stop")

    def start_standby(self, timeout: float = 30) -> None:
        """Start the standby (no-op if running) and wait until it accepts connections."""
        if not self.standby_running():
            self._pg_ctl("-D", f"{self.base}/standby", "-l", f"{self.base}/standby.log",
                         "-w", "start")
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.standby("select 1")
                return
            except Exception:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)


_SHARED: Rig | None = None


def acquire(rig_root: str | os.PathLike | None = None) -> Rig:
    """The process-wide rig: from the environment, or a private one started now."""
    global _SHARED
    if _SHARED is not None:
        return _SHARED
    env = dict(os.environ)
    if all(v in env for v in VARS):
        _SHARED = Rig(env)
        return _SHARED
    root = Path(rig_root or env.get("HISX_RIG") or ROOT / ".rig")
    env["HISX_RIG"] = str(root / f"private-{os.getpid()}")
    Path(env["HISX_RIG"]).mkdir(parents=True, exist_ok=True)
    env["HISX_PG_PRIMARY_PORT"], env["HISX_PG_STANDBY_PORT"] = map(str, _free_ports(2))
    env.update(_script("pg_up", env))
    _SHARED = Rig(env, started=env.get("HISX_PG_RIG_STARTED") == "1")
    return _SHARED


def release() -> None:
    """Stop (and remove) the rig if :func:`acquire` started it; leave a borrowed one running
    with its standby up."""
    global _SHARED
    rig, _SHARED = _SHARED, None
    if rig is None:
        return
    if not rig.started:
        rig.start_standby()  # a drill must not leave someone else's standby down
        return
    _script("pg_down", {**rig.env, "HISX_PG_RIG_STARTED": "1"})
    shutil.rmtree(rig.env["HISX_RIG"], ignore_errors=True)
