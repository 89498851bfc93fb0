"""Clean sample source rows per dataset, built from a center's maps (for tests and benchmarks).

Every row generated here standardizes cleanly; tests then break it on purpose. No simulator
import: the local codes come from the map files, like a test engineer reading them.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from hisx.standards.datasets import DATASETS
from hisx.standards.maps import MapSet
from hisx.standards.pseudonym import check_char

BASE_TIME = datetime(2026, 11, 2, 8, 0, 0)


def national_id(area: str, birth: date, seq: int) -> str:
    """A valid 18-character GB 11643 number (seq odd = male)."""
    body = f"{area}{birth:%Y%m%d}{seq % 1000:03d}"
    return body + check_char(body)


def _raw_locals(maps: MapSet, name: str) -> list[str]:
    """Local codes in their file spelling (map keys are case-folded)."""
    return list(maps.get(name).originals)


def sample_source(dataset: str, n: int, maps: MapSet, *, tenant: str, seed: int = 0,
                  start: datetime = BASE_TIME) -> pd.DataFrame:
    """``n`` clean source rows of ``dataset``'s table with the center's local codes."""
    rng = np.random.default_rng(seed)
    spec = DATASETS[dataset]
    ids = np.arange(1, n + 1, dtype=np.int64)
    t = [start + timedelta(minutes=int(i)) for i in ids]
    rv = ids + 1000

    def pick(name: str) -> list[str]:
        codes = _raw_locals(maps, name)
        return [codes[int(k)] for k in rng.integers(0, len(codes), n)]

    base: dict[str, object] = {"org_code": tenant, spec.pk: ids, "updated_at": [
        x + timedelta(seconds=5) for x in t], "row_version": rv}
    if dataset == "person":
        male = rng.integers(0, 2, n).astype(bool)
        births = [date(1940 + int(i % 60), 1 + int(i % 12), 1 + int(i % 28)) for i in ids]
        gender_codes = maps.get("gender")
        male_local = next(k for k, v in gender_codes.originals.items() if v == "1")
        female_local = next(k for k, v in gender_codes.originals.items() if v == "2")
        id_local = next(k for k, v in maps.get("id_type").originals.items() if v == "01")
        cols = {
            "patient_no": [f"P{i:08d}" for i in ids], "name": ["张伟" if m else "李娜" for m in male],
            "gender": [male_local if m else female_local for m in male], "birth_date": births,
            "id_type": id_local,
            "id_no": [national_id("310115", b, int(i) * 2 + int(m)) for i, b, m in
                      zip(ids, births, male, strict=True)],
            "phone": [f"138{int(i):08d}" for i in ids], "division_code": "310115",
            "address": "浦东新区高行镇东靖路1号", "ethnicity": pick("ethnicity"),
            "marital_status": pick("marital_status"), "insurance_type": pick("insurance_type"),
            "is_deleted": 0, "created_at": t,
        }
    elif dataset == "outpatient_visit":
        cols = {"visit_no": [f"V{i:010d}" for i in ids], "patient_id": ids,
                "dept_code": pick("department"), "doctor_code": "D001", "reg_time": t,
                "visit_kind": pick("first_visit"), "visit_type": pick("visit_type"),
                "reg_fee": 10.0, "status": pick("visit_status"), "is_deleted": 0}
    elif dataset == "diagnosis":
        cols = {"reg_id": ids, "seq_no": 1, "icd_code": "I10.x00x002", "diag_name": "高血压",
                "is_primary": 1, "diag_time": t}
    elif dataset == "prescription":
        cols = {"rx_no": [f"RX{i:08d}" for i in ids], "reg_id": ids, "doctor_code": "D001",
                "rx_time": t, "rx_type": pick("rx_type"), "total_amount": 25.5}
    elif dataset == "prescription_item":
        qty = rng.integers(1, 5, n).astype(float)
        cols = {"rx_id": ids, "line_no": 1, "drug_code": pick("drug"), "drug_name": "药品",
                "spec": "5mg*28片", "dosage_form": "片剂", "dose": 5.0, "dose_unit": "mg",
                "route": pick("route"), "frequency": pick("frequency"), "days": 7,
                "quantity": qty, "unit_price": 4.62, "amount": np.round(qty * 4.62, 2),
                "rx_time": t}
    elif dataset == "charge":
        cols = {"charge_no": [f"C{i:08d}" for i in ids], "reg_id": ids, "rx_id": ids,
                "fee_category": pick("fee_category"), "amount": 30.0,
                "pay_method": pick("pay_method"), "insurance_amount": 20.0,
                "self_amount": 10.0, "charge_time": t, "refund_of": None}
    elif dataset == "dispense":
        cols = {"rx_id": ids, "pharmacist_code": "PH01", "dispense_time": t,
                "status": pick("dispense_status")}
    elif dataset == "chronic_followup":
        cols = {"patient_id": ids, "disease": pick("disease_group"), "followup_time": t,
                "method": pick("followup_method"), "sbp": 132, "dbp": 84,
                "fasting_glucose": 6.1, "adherence": pick("adherence"), "doctor_code": "D001"}
    elif dataset == "family_contract":
        cols = {"contract_no": [f"FC{i:08d}" for i in ids], "patient_id": ids,
                "team_code": "T01", "doctor_code": "D001",
                "package_code": pick("service_package"), "signed_time": t,
                "start_date": date(2026, 1, 1), "end_date": date(2026, 12, 31),
                "status": pick("contract_status")}
    else:  # pragma: no cover
        raise KeyError(dataset)
    df = pd.DataFrame({**base, **cols})
    df[spec.business_time] = t
    return df


def sample_person_keys(n: int, tenant: str) -> pd.DataFrame:
    """A person-key lookup covering patient ids 1..n."""
    ids = np.arange(1, n + 1, dtype=np.int64)
    return pd.DataFrame({"tenant": tenant, "patient_id": ids,
                         "person_key": [f"{int(i):064x}" for i in ids]})
