"""The PostgreSQL primary + hot standby rig: taken from the environment (make test) or, when
pytest runs directly, started here through scripts/rig/pg.sh and stopped at session end."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
VARS = ("HISX_PG_PRIMARY_URL", "HISX_PG_STANDBY_URL", "HISX_PG_PRIMARY_ODBC", "HISX_PG_STANDBY_ODBC")


def _script(cmd: str, env: dict) -> dict:
    out = subprocess.run(
        ["bash", "-c", f"source scripts/rig/pg.sh; {cmd} >&2; env -0"], cwd=ROOT, env=env,
        check=True, stdout=subprocess.PIPE).stdout.decode()
    return dict(kv.split("=", 1) for kv in out.split("\0") if kv.startswith("HISX_PG_"))


class Rig:
    def __init__(self, env: dict) -> None:
        self.env = env
        self.primary_dsn = env["HISX_PG_PRIMARY_URL"].replace("postgresql+psycopg", "postgresql")
        self.standby_dsn = env["HISX_PG_STANDBY_URL"].replace("postgresql+psycopg", "postgresql")
        self.pg_bin = env.get("HISX_PG_BIN", "/usr/lib/postgresql/15/bin")
        self.base = env.get("HISX_PG_RIG_DIR") or str(
            Path(os.environ.get("HISX_RIG", ROOT / ".rig")) / "pg")

    def primary(self, sql: str, params=None):
        with psycopg.connect(self.primary_dsn, autocommit=True) as c:
            cur = c.execute(sql, params)
            return cur.fetchall() if cur.description else None

    def standby(self, sql: str, params=None):
        with psycopg.connect(self.standby_dsn, autocommit=True) as c:
            cur = c.execute(sql, params)
            return cur.fetchall() if cur.description else None

    def caught_up(self, timeout: float = 10) -> None:
        (lsn,) = self.primary("select pg_current_wal_lsn()::text")[0]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.standby("select pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))[0][0]:
                return
            time.sleep(0.05)
        raise TimeoutError("standby did not catch up")

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", f"{self.pg_bin}/pg_ctl", *args],
                       check=True, stdout=subprocess.DEVNULL)

    def stop_standby(self) -> None:
        self._pg_ctl("-D", f"{self.base}/standby", "-m", "immediate", "-w", "stop")

    def start_standby(self) -> None:
        self._pg_ctl("-D", f"{self.base}/standby", "-l", f"{self.base}/standby.log", "-w", "start")


@pytest.fixture(scope="session")
def pg_rig():
    env = dict(os.environ)
    started = False
    if not all(v in env for v in VARS):
        env.setdefault("HISX_RIG", str(ROOT / ".rig"))
        Path(env["HISX_RIG"]).mkdir(parents=True, exist_ok=True)
        env.update(_script("pg_up", env))
        started = env.get("HISX_PG_RIG_STARTED") == "1"
    rig = Rig(env)
    try:
        yield rig
    finally:
        try:  # a test that stopped the standby must not leave it down
            rig.standby("select 1")
        except psycopg.OperationalError:
            rig.start_standby()
        if started:
            _script("pg_down", {**env, "HISX_PG_RIG_STARTED": "1"})
