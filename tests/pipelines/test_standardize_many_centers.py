"""A batch that holds several centers' rows standardizes exactly as one batch per center.

The flow standardizes an hour's few rows of every center in one batch per dataset (one pass
instead of one per center); the rows, their quarantine reasons, the duplicates dropped per
center and the cross-batch deduplication against each center's own earlier rows must not
change.
"""

from __future__ import annotations

import shutil
from datetime import datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from hisx.pipelines.standardize import (
    DATASETS,
    NEEDS_PERSON_KEYS,
    existing_keys_from_std,
    standardize,
)
from hisx.simulator.core import simulate
from hisx.standards import pseudonym
from hisx.standards.maps import MAPS_DIR

NOW = datetime(2030, 1, 1)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('many') / 'his.sqlite'}"
    # six centers: two of each vendor; defects and duplicates in every center
    simulate(url, centers=6, months=1, visits_per_month=300, defect_rate=0.08, progress=False)
    with sa.create_engine(url).connect() as conn:
        frames = {s.source_table: pd.read_sql_table(s.source_table, conn)
                  for s in DATASETS.values()}
        orgs = pd.read_sql_table("organizations", conn)
    pat = frames["patients"]
    people = pd.DataFrame({"tenant": pat["org_code"], "patient_id": pat["patient_id"],
                           "person_key": pseudonym.person_keys(
                               pseudonym.key_from_env(), pat["id_no"], pat["name"],
                               pat["birth_date"], pat["gender"])})
    return frames, orgs, people


def _run(dataset: str, df: pd.DataFrame, tenant, vendor: str, people, existing):
    return standardize(dataset, df, tenant=tenant, vendor=vendor, load_id="many", now=NOW,
                       person_keys=people if dataset in NEEDS_PERSON_KEYS else None,
                       existing_keys=existing)


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    """Rows in (center, key) order, every missing value as None (an empty batch's frame has
    object columns where a full one has Int64: the values are what must be equal)."""
    df = df.sort_values(["tenant", "source_key"]).reset_index(drop=True).astype(object)
    return df.where(df.notna(), None)


def _existing(dataset: str, std: pd.DataFrame) -> pd.DataFrame:
    return existing_keys_from_std(dataset, std).assign(tenant=std["tenant"].to_numpy())


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_one_batch_of_several_centers_equals_one_per_center(world, dataset):
    frames, orgs, people = world
    spec = DATASETS[dataset]
    src = frames[spec.source_table]
    for vendor, group in orgs.groupby("his_vendor"):
        centers = list(group["org_code"])
        assert len(centers) == 2
        rows = src[src["org_code"].isin(centers)].sort_values(spec.pk)
        # two batches in key order: the second deduplicates against the first one's std rows
        cut = rows[spec.pk].quantile(0.6)
        halves = [rows[rows[spec.pk] <= cut], rows[rows[spec.pk] > cut]]
        one: list = []
        each: list = []
        for half in halves:
            prior = [r.standardized for r in one]
            existing = _existing(dataset, pd.concat(prior)) if prior else None
            one.append(_run(dataset, half, list(half["org_code"]), vendor, people, existing))
            per = []
            for c in centers:
                part = half[half["org_code"] == c]
                done = [r.standardized for r in each if r.standardized["tenant"].eq(c).all()]
                ex = (existing_keys_from_std(dataset, pd.concat(done)) if done
                      and sum(map(len, done)) else None)
                per.append(_run(dataset, part, c, vendor, people, ex))
            each += per
            got, want = one[-1], per
            pd.testing.assert_frame_equal(
                _sorted(got.standardized),
                _sorted(pd.concat([r.standardized for r in want])))
            pd.testing.assert_frame_equal(
                _sorted(got.quarantined),
                _sorted(pd.concat([r.quarantined for r in want])))
            assert got.deduplicated == sum(r.deduplicated for r in want)
            assert {c: got.deduplicated_by.get(c, 0) for c in centers} == {
                c: r.deduplicated for c, r in zip(centers, want, strict=True)}
            for c in centers:  # conservation per center
                n_in = int((half["org_code"] == c).sum())
                assert n_in == (int(got.standardized["tenant"].eq(c).sum())
                                + int(got.quarantined["tenant"].eq(c).sum())
                                + got.deduplicated_by.get(c, 0))


def test_centers_with_their_own_maps_are_refused(world, tmp_path, monkeypatch):
    frames, orgs, _ = world
    a, b = list(orgs.loc[orgs["his_vendor"] == "vendor_a", "org_code"])[:2]
    maps = tmp_path / "maps"
    shutil.copytree(MAPS_DIR, maps)
    (maps / "centers" / a).mkdir(parents=True)
    (maps / "centers" / a / "dispense_status.csv").write_text(
        "local_code,standard_code,code_system,note\nX,1,HISX.DISPENSE_STATUS,local\n",
        encoding="utf-8")
    monkeypatch.setenv("HISX_MAPS_DIR", str(maps))
    df = frames["dispenses"]
    df = df[df["org_code"].isin([a, b])]
    with pytest.raises(ValueError, match="do not share their maps"):
        standardize("dispense", df, tenant=list(df["org_code"]), vendor="vendor_a",
                    load_id="x", now=NOW)
    # each alone is fine, and so are the two when the override is gone
    for c in (a, b):
        part = df[df["org_code"] == c]
        res = standardize("dispense", part, tenant=c, vendor="vendor_a", load_id="x", now=NOW)
        assert len(res.standardized) + len(res.quarantined) + res.deduplicated == len(part)
    shutil.rmtree(maps / "centers" / a)
    res = standardize("dispense", df, tenant=list(df["org_code"]), vendor="vendor_a",
                      load_id="x", now=NOW)
    assert set(res.standardized["tenant"]) == {a, b}


def test_a_center_per_row_must_match_the_rows(world):
    frames, orgs, _ = world
    df = frames["dispenses"].head(10)
    with pytest.raises(ValueError, match="gives 1 centers for a batch of 10 rows"):
        standardize("dispense", df, tenant=[df["org_code"].iloc[0]], vendor="vendor_a",
                    load_id="x", now=NOW)
