"""End to end against the simulator: every manifest defect is caught with its reason (or
deduplicated / normalized), and nothing else is quarantined for a defect-free reason."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from hisx.pipelines.standardize import DATASETS, person_key_lookup, standardize
from hisx.simulator.core import simulate
from hisx.standards import pseudonym

EXPECTED: dict[str, tuple[str, str]] = {
    "id_missing": ("person", "missing:id_no"),
    "id_checksum": ("person", "invalid:id_no:checksum"),
    "id_birth_mismatch": ("person", "inconsistent:id_no:birth_date"),
    "id_gender_mismatch": ("person", "inconsistent:id_no:gender"),
    "test_patient": ("person", "test_record:name"),
    "unmapped_dept": ("outpatient_visit", "unmapped:dept_code:"),
    "unmapped_drug": ("prescription_item", "unmapped:drug_code:"),
    "implausible_bp": ("chronic_followup", "implausible:"),
    "implausible_glucose": ("chronic_followup", "implausible:fasting_glucose"),
    "future_time": ("outpatient_visit", "future:reg_time"),
}


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "his.sqlite"
    url = f"sqlite:///{path}"
    manifest = simulate(url, centers=3, months=1, visits_per_month=1500, defect_rate=0.05,
                        progress=False)
    eng = sa.create_engine(url)
    with eng.connect() as conn:
        frames = {spec.source_table: pd.read_sql_table(spec.source_table, conn)
                  for spec in DATASETS.values()}
        orgs = pd.read_sql_table("organizations", conn)
    return manifest, frames, orgs


def test_manifest_defects_land_in_quarantine(simulated):
    manifest, frames, orgs = simulated
    key = pseudonym.key_from_env()
    now = datetime(2030, 1, 1)
    results: dict[str, list] = {d: [] for d in DATASETS}
    for org, vendor in zip(orgs["org_code"], orgs["his_vendor"], strict=True):
        # as the flow does: keys for every source patient (a follow-up of a patient whose ID
        # card number is broken is still a valid follow-up)
        pat = frames["patients"][frames["patients"]["org_code"] == org]
        people = pd.DataFrame({"tenant": org, "patient_id": pat["patient_id"],
                               "person_key": pseudonym.person_keys(
                                   key, pat["id_no"], pat["name"], pat["birth_date"],
                                   pat["gender"])})
        for dataset, spec in DATASETS.items():
            df = frames[spec.source_table]
            df = df[df["org_code"] == org].reset_index(drop=True)
            res = standardize(dataset, df, tenant=org, vendor=vendor, load_id="sim", now=now,
                              person_keys=people)
            assert len(df) == len(res.standardized) + len(res.quarantined) + res.deduplicated
            if dataset == "person":  # std person keys == the keys the other datasets carry
                lk = person_key_lookup(res.standardized).merge(people, on=["tenant", "patient_id"])
                assert len(lk) == len(res.standardized)
                assert (lk["person_key_x"] == lk["person_key_y"]).all()
            results[dataset].append(res)
    quarantined = {d: pd.concat([r.quarantined for r in rs]) for d, rs in results.items()}
    reasons = {d: dict(zip(q["source_key"].astype(int), q["reasons"], strict=True))
               for d, q in quarantined.items()}
    for kind, (dataset, prefix) in EXPECTED.items():
        for d in manifest.defects.get(kind, []):
            got = reasons[dataset].get(d["pk"], [])
            assert any(r.startswith(prefix) for r in got), (kind, d, got)
    dups = manifest.defects.get("duplicate_row", [])
    assert sum(r.deduplicated for r in results["outpatient_visit"]) == len(dups)
    std_visits = pd.concat([r.standardized for r in results["outpatient_visit"]])
    assert not set(std_visits["source_key"]) & {d["pk"] for d in dups}
    # whitespace / full-width defects are normalized, not quarantined
    for kind in ("whitespace", "fullwidth_digits"):
        for d in manifest.defects.get(kind, []):
            ds = "person" if d["table"] == "patients" else "outpatient_visit"
            assert d["pk"] not in reasons[ds] or all(
                not r.startswith(("unmapped:", "invalid:")) for r in reasons[ds][d["pk"]]), d
    # every quarantined patient / visit / follow-up row is explained by a manifest defect
    explained = {kind: {d["pk"] for d in manifest.defects.get(kind, [])} for kind in EXPECTED}
    counts: dict[str, int] = {}
    for rs in reasons.values():
        for r in rs.values():
            for x in r:
                counts[":".join(x.split(":")[:2])] = counts.get(":".join(x.split(":")[:2]), 0) + 1
    # no false positives anywhere: only the defect kinds the simulator injected
    assert set(counts) <= {"future:reg_time", "implausible:bp", "implausible:sbp",
                           "implausible:dbp", "implausible:fasting_glucose",
                           "inconsistent:id_no", "invalid:id_no", "missing:id_no",
                           "test_record:name", "unmapped:dept_code", "unmapped:drug_code",
                           "future:birth_date"}, counts
    for dataset in ("person", "chronic_followup", "prescription_item"):
        kinds = [k for k, (ds, _) in EXPECTED.items() if ds == dataset]
        allowed = set().union(*(explained[k] for k in kinds))
        unexplained = {pk: rs for pk, rs in reasons[dataset].items() if pk not in allowed}
        assert not unexplained, list(unexplained.items())[:5]
