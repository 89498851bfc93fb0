"""`make ui` serves the asset graph: start scripts/ui.sh and ask the webserver's GraphQL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from datetime import date
from pathlib import Path

import pytest

from hisx.simulator import simulate

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, data: bytes | None = None) -> bytes:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read()


@pytest.mark.webserver
def test_ui_serves_the_asset_graph(tmp_path) -> None:
    home = tmp_path / "hisx"
    (home / "source").mkdir(parents=True)
    simulate(f"sqlite:///{home / 'source' / 'his.sqlite'}", centers=3, months=1,
             visits_per_month=300, seed=1, start=date(2026, 8, 1), progress=False)
    port = _free_port()
    env = {**os.environ, "HISX_HOME": str(home), "HISX_UI_PORT": str(port)}
    log = open(tmp_path / "ui.log", "wb")  # noqa: SIM115 - outlives the Popen call
    proc = subprocess.Popen(["bash", "scripts/ui.sh"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 90
        while True:
            try:
                info = json.loads(_get(f"http://127.0.0.1:{port}/server_info"))
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise AssertionError((tmp_path / "ui.log").read_text()[-3000:]) from None
                time.sleep(0.5)
        assert info["dagster_version"].startswith("1.13")
        q = b'{"query":"{ assetNodes { assetKey { path } groupName } }"}'
        nodes = json.loads(_get(f"http://127.0.0.1:{port}/graphql", q))["data"]["assetNodes"]
        keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
        assert {"ods/registrations", "std/outpatient_visit", "marts/mart_visits_monthly"} <= keys
        assert {n["groupName"] for n in nodes} >= {"ods", "std", "marts"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
