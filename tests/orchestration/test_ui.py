"""`make ui` serves the asset graph with its daemon live: start scripts/ui.sh and ask the
webserver's GraphQL for every group, the checks, the partitions and the running sensors."""

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


NODES = """{ assetNodes { assetKey { path } groupName partitionDefinition { type }
  assetChecksOrError { ... on AssetChecks { checks { name blocking
    partitionDefinition { type } } } } } }"""
PARTS = """{ assetNodeOrError(assetKey: {path: ["std", "outpatient_visit"]}) {
  ... on AssetNode { partitionKeysByDimension { name partitionKeys } } } }"""
SENSORS = """{ repositoriesOrError { ... on RepositoryConnection { nodes {
  sensors { name sensorState { status } } schedules { name scheduleState { status } } } } } }"""


def _gql(port: int, query: str) -> dict:
    body = json.dumps({"query": query}).encode()
    out = json.loads(_get(f"http://127.0.0.1:{port}/graphql", body))
    assert "errors" not in out, out
    return out["data"]


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
        nodes = _gql(port, NODES)["assetNodes"]
        by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
        assert {"source/registrations", "ods/registrations", "std/outpatient_visit",
                "marts/mart_visits_monthly", "feeds/regional_platform",
                "share/data_dictionary"} <= set(by_key)
        assert {n["groupName"] for n in nodes} == {"source", "ods", "std", "marts", "share",
                                                   "feeds"}
        checks = {(k, c["name"], c["blocking"]) for k, n in by_key.items()
                  for c in (n["assetChecksOrError"].get("checks") or [])}
        assert {("std/outpatient_visit", "conservation", True),
                ("std/outpatient_visit", "dq_quarantine_rate", False),
                ("ods/registrations", "reconciliation", True),
                ("ods/registrations", "freshness", False)} <= checks
        assert by_key["std/outpatient_visit"]["partitionDefinition"]["type"] == "DYNAMIC"
        # every check is evaluated per center partition
        assert {c["partitionDefinition"]["type"] for n in nodes
                for c in (n["assetChecksOrError"].get("checks") or [])} == {"DYNAMIC"}
        # the daemon is live: the source sensor adds the 3 centers as partitions on its own
        deadline = time.time() + 120
        while True:
            dims = _gql(port, PARTS)["assetNodeOrError"]["partitionKeysByDimension"]
            if dims and len(dims[0]["partitionKeys"]) == 3:
                break
            assert time.time() < deadline, f"no centers from the sensor: {dims}"
            time.sleep(2)
        repo = _gql(port, SENSORS)["repositoriesOrError"]["nodes"][0]
        states = {x["name"]: x["sensorState"]["status"] for x in repo["sensors"]}
        assert states == {"source_his": "RUNNING", "replica_health_his": "RUNNING"}
        assert {x["name"]: x["scheduleState"]["status"] for x in repo["schedules"]} == {
            "nightly_reconciliation_schedule": "RUNNING", "data_dictionary_schedule": "RUNNING"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
