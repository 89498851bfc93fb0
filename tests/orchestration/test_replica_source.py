"""The ods assets read a configured replica source through the replica-aware extractor:
rows land from the hot standby (not the primary), reconciliation runs on the replica, and
the materialization records where it read."""

from __future__ import annotations

import uuid

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from hisx.connectors.source.config import parse_source
from hisx.connectors.source.pgsetup import install_row_version
from hisx.connectors.warehouse import Warehouse
from hisx.orchestration.assets import SOURCE_TAG, ods_assets
from hisx.orchestration.partitions import CENTER
from hisx.orchestration.resources import HisxResource

A, B = "310115001", "310115002"


@pytest.fixture()
def rig(pg_rig):
    return pg_rig


@pytest.mark.standby
@pytest.mark.odbc
def test_ods_asset_reads_the_standby_and_reconciles(rig, tmp_path, monkeypatch) -> None:
    schema = f"s_{uuid.uuid4().hex[:8]}"
    raw = {
        "dialect": "postgresql", "schema": schema, "tables": ["registrations"],
        "primary": {"name": "primary", "odbc": rig.env["HISX_PG_PRIMARY_ODBC"]},
        "replicas": [{"name": "standby", "odbc": rig.env["HISX_PG_STANDBY_ODBC"]}],
        "tenants": [{"org_code": A, "vendor": "vendor_a"}, {"org_code": B, "vendor": "vendor_b"}],
        "policies": {"on_no_healthy_replica": "fail", "chunk_rows": 500},
    }
    table = parse_source("his_ag", raw).table("registrations")
    eng = sa.create_engine(rig.env["HISX_PG_PRIMARY_URL"])
    install_row_version(eng, [table])
    eng.dispose()
    for org, ids in ((A, range(1, 1201)), (B, range(5001, 5101))):
        rig.primary(
            f"insert into {table.fullname} (reg_id, org_code, visit_no, patient_id, dept_code, "
            "doctor_code, reg_time, visit_kind, visit_type, reg_fee, status, is_deleted, "
            "updated_at, row_version) select g, %s, 'V' || g, g, 'NK01', 'D1', "
            "timestamp '2026-08-01 08:00' + g * interval '10 minute', '初诊', '门诊', 10, '正常', "
            "0, now(), 0 from unnest(%s::bigint[]) g", (org, list(ids)))
    rig.caught_up()
    sources = tmp_path / "sources.yaml"
    sources.write_text(yaml.safe_dump({"sources": {"his_ag": raw}}, allow_unicode=True),
                       encoding="utf-8")
    wh_url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    monkeypatch.setenv("HISX_SOURCES", str(sources))
    monkeypatch.setenv("HISX_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HISX_WAREHOUSE_URL", wh_url)
    asset = next(a for a in ods_assets if a.key == dg.AssetKey(["ods", "registrations"]))
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(CENTER.name, [A, B])
        res = dg.materialize([asset], partition_key=A, instance=instance,
                             resources={"hisx": HisxResource()}, tags={SOURCE_TAG: "his_ag"})
        assert res.success
        mat = res.asset_materializations_for_node(asset.node_def.name)[0]
        reads = mat.metadata["replica_reads"].value
        assert [(r["tenant"], r["endpoint"], r["used_primary"], r["reader_in_recovery"])
                for r in reads] == [(A, "standby", False, True)]
        assert mat.metadata["rows_read"].value == 1200
        checks = [e for e in res.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
        recon = [e.event_specific_data for e in checks
                 if e.event_specific_data.check_name == "reconciliation"]
        assert recon and all(c.passed for c in recon)
    with Warehouse.from_url(wh_url) as wh:  # only the partition's center was read
        assert wh.scalar("SELECT count(*) FROM ods_registrations WHERE org_code = :o",
                         {"o": A}) == 1200
        assert wh.scalar("SELECT count(*) FROM ods_registrations WHERE org_code = :o",
                         {"o": B}) == 0
        # the replica reconciliation is real: a row missing from ODS is a differing day
        from hisx.orchestration.assets import _reconcile_replica
        from hisx.orchestration.sources import source_named

        assert _reconcile_replica(source_named("his_ag"), wh, "registrations",
                                  {A: ["2026-08"]}) == []
        wh.execute("DELETE FROM ods_registrations WHERE reg_id = 7")
        diffs = _reconcile_replica(source_named("his_ag"), wh, "registrations", {A: ["2026-08"]})
        assert [(d.tenant, d.source_rows - d.ods_rows) for d in diffs] == [(A, 1)]
