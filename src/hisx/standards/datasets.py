"""The standardized datasets: fields, their data elements and value sets, and JSON Schemas.

One :class:`DatasetSpec` per dataset (source table, PK, business time, natural key, fields).
:func:`json_schema` builds the draft 2020-12 contract from it; the files under ``schemas/`` are
those contracts written out (``write_schemas``) and a test keeps them in sync.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from hisx.standards.catalog import ICD10_CODE_SYSTEM, ICD10_PATTERN, data_elements, value_set

SCHEMA_DIR = Path(str(resources.files("hisx.standards"))) / "schemas"
SCHEMA_BASE_URI = "https://hisx.example/schemas/std/"
MONEY_SQL = "NUMERIC(14,2)"
DATETIME_PATTERN = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$"
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"


@dataclass(frozen=True)
class Field:
    """One standardized column.

    ``kind``: string | integer | number | money | boolean | date | datetime.
    """

    name: str
    kind: str
    de: str
    value_set: str | None = None
    required: bool = False
    max_length: int | None = None
    pattern: str | None = None
    description: str = ""
    code_system: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    source_table: str
    pk: str
    business_time: str
    natural_key: tuple[str, ...]
    fields: tuple[Field, ...]
    title: str = ""

    @property
    def columns(self) -> list[str]:
        return [f.name for f in COMMON_FIELDS + self.fields]

    @property
    def all_fields(self) -> tuple[Field, ...]:
        return COMMON_FIELDS + self.fields


COMMON_FIELDS: tuple[Field, ...] = (
    Field("tenant", "string", "HISX.00.001", required=True, max_length=40,
          description="center (org_code); the isolation key"),
    Field("source_key", "integer", "HISX.00.002", required=True,
          description="source table primary key"),
    Field("row_version", "integer", "HISX.00.003", required=True),
    Field("business_time", "datetime", "HISX.00.004", required=True),
    Field("business_date", "date", "HISX.00.005", required=True),
    Field("map_version", "string", "HISX.00.006", required=True, max_length=20),
    Field("load_id", "string", "HISX.00.007", required=True, max_length=64),
)

_KEY = Field("person_key", "string", "HISX.01.001", required=True, max_length=64,
             pattern=r"^[0-9a-f]{64}$", description="HMAC-SHA256 pseudonym of the person")
_DOCTOR = Field("doctor_code", "string", "HISX.02.001", required=True, max_length=20)


def _code(name: str, de: str, vs: str, required: bool = False, desc: str = "") -> Field:
    return Field(name, "string", de, value_set=vs, required=required, description=desc)


DATASETS: dict[str, DatasetSpec] = {}


def _add(spec: DatasetSpec) -> None:
    DATASETS[spec.name] = spec


_add(DatasetSpec(
    "person", "patients", "patient_id", "created_at", ("org_code", "patient_no"),
    title="个人基本信息 (WS 445.1 患者基本信息), pseudonymized",
    fields=(
        _KEY,
        Field("key_id", "string", "HISX.01.002", required=True, max_length=32),
        Field("person_key_strength", "string", "HISX.01.003", required=True, max_length=8),
        Field("patient_no", "string", "HISX.01.004", required=True, max_length=20),
        _code("id_type_code", "DE02.01.031.00", "id_type"),
        Field("id_no_masked", "string", "DE02.01.030.00", max_length=32,
              description="area code + last 4 kept, the rest masked"),
        Field("id_legacy15", "boolean", "HISX.01.006"),
        Field("name_masked", "string", "DE02.01.039.00", max_length=4,
              description="surname + *; the full name is not carried"),
        Field("birth_date", "date", "DE02.01.005.01"),
        _code("gender_code", "DE02.01.040.00", "gender", required=True),
        _code("ethnicity_code", "DE02.01.025.00", "ethnicity"),
        _code("marital_status_code", "DE02.01.018.00", "marital_status"),
        _code("insurance_type_code", "DE02.01.044.00", "insurance_type"),
        Field("division_code", "string", "DE02.01.038.00", max_length=6, pattern=r"^\d{6}$"),
        Field("phone_hash", "string", "DE02.01.010.00", max_length=64, pattern=r"^[0-9a-f]{64}$",
              description="HMAC-SHA256 of the digits of the phone number"),
        Field("phone_masked", "string", "DE02.01.010.00", max_length=20),
        Field("is_deleted", "boolean", "HISX.01.005", required=True),
    ),
))

_add(DatasetSpec(
    "outpatient_visit", "registrations", "reg_id", "reg_time", ("org_code", "visit_no"),
    title="门(急)诊就诊 (WS 445.2)",
    fields=(
        Field("visit_no", "string", "DE01.00.010.00", required=True, max_length=18),
        _KEY,
        Field("dept_code_local", "string", "HISX.02.004", required=True, max_length=20),
        _code("dept_code", "DE08.10.025.00", "department", required=True),
        _DOCTOR,
        _code("first_visit_code", "DE06.00.196.00", "first_visit", required=True),
        _code("visit_type_code", "DE02.01.060.00", "visit_type", required=True),
        Field("reg_fee", "money", "HISX.03.001", required=True),
        _code("status_code", "HISX.03.002", "visit_status", required=True),
        Field("is_deleted", "boolean", "HISX.01.005", required=True),
    ),
))

_add(DatasetSpec(
    "diagnosis", "diagnoses", "diag_id", "diag_time", ("org_code", "reg_id", "seq_no"),
    title="门诊诊断 (WS 445.2)",
    fields=(
        Field("visit_source_key", "integer", "HISX.03.018", required=True,
              description="reg_id of the visit"),
        Field("seq_no", "integer", "HISX.03.003", required=True),
        Field("icd_code", "string", "DE05.01.024.00", required=True, max_length=20,
              pattern=ICD10_PATTERN, code_system=ICD10_CODE_SYSTEM),
        Field("icd_code_system", "string", "DE05.01.024.00", required=True, max_length=40,
              description="the code system of icd_code; never compare across systems"),
        Field("diag_name", "string", "DE05.01.025.00", max_length=50),
        Field("is_primary", "boolean", "HISX.03.004", required=True),
        _code("disease_group", "HISX.03.005", "disease_group"),
    ),
))

_add(DatasetSpec(
    "prescription", "prescriptions", "rx_id", "rx_time", ("org_code", "rx_no"),
    title="门(急)诊处方 (WS 445.3)",
    fields=(
        Field("rx_no", "string", "DE01.00.020.00", required=True, max_length=30),
        Field("visit_source_key", "integer", "HISX.03.018", required=True),
        _DOCTOR,
        _code("rx_type_code", "HISX.03.006", "rx_type", required=True),
        Field("total_amount", "money", "DE07.00.004.00", required=True),
    ),
))

_add(DatasetSpec(
    "prescription_item", "prescription_items", "item_id", "rx_time",
    ("org_code", "rx_id", "line_no"),
    title="处方明细 (WS 445.3 用药)",
    fields=(
        Field("rx_source_key", "integer", "HISX.03.018", required=True),
        Field("line_no", "integer", "HISX.03.007", required=True),
        Field("drug_code_local", "string", "HISX.03.020", required=True, max_length=30),
        Field("drug_code", "string", "HISX.03.008", required=True, max_length=23,
              code_system="NHSA 医保药品分类与代码"),
        Field("drug_name", "string", "DE08.50.022.00", max_length=50),
        Field("spec", "string", "DE08.50.043.00", max_length=30),
        Field("dose", "number", "DE08.50.023.00"),
        Field("dose_unit", "string", "DE08.50.024.00", max_length=10),
        _code("route_code", "DE06.00.134.00", "route"),
        _code("frequency_code", "DE06.00.133.00", "frequency"),
        Field("days", "integer", "DE06.00.294.00"),
        Field("quantity", "number", "DE06.00.135.00", required=True),
        Field("unit_price", "money", "HISX.03.009", required=True),
        Field("amount", "money", "DE07.00.004.00", required=True),
    ),
))

_add(DatasetSpec(
    "charge", "charges", "charge_id", "charge_time", ("org_code", "charge_no"),
    title="门诊收费 (WS 445.1 医疗费用记录); refunds are negative and reference the original",
    fields=(
        Field("charge_no", "string", "HISX.03.014", required=True, max_length=30),
        Field("visit_source_key", "integer", "HISX.03.018", required=True),
        Field("rx_source_key", "integer", "HISX.03.018"),
        _code("fee_category_code", "DE07.00.002.00", "fee_category", required=True),
        Field("amount", "money", "DE07.00.004.00", required=True),
        _code("pay_method_code", "DE07.00.007.00", "pay_method", required=True),
        Field("insurance_amount", "money", "HISX.03.010", required=True),
        Field("self_amount", "money", "DE07.00.001.00", required=True),
        Field("is_refund", "boolean", "HISX.03.019", required=True),
        Field("refund_of_source_key", "integer", "HISX.03.011"),
    ),
))

_add(DatasetSpec(
    "dispense", "dispenses", "dispense_id", "dispense_time", ("org_code", "rx_id"),
    title="发药",
    fields=(
        Field("rx_source_key", "integer", "HISX.03.018", required=True),
        Field("pharmacist_code", "string", "HISX.02.002", required=True, max_length=20),
        _code("status_code", "HISX.03.012", "dispense_status", required=True),
    ),
))

_add(DatasetSpec(
    "chronic_followup", "chronic_followups", "followup_id", "followup_time",
    ("org_code", "followup_id"),
    title="慢病随访 (WS 372 高血压 / 2型糖尿病患者健康管理)",
    fields=(
        _KEY,
        _code("disease_group", "HISX.03.005", "disease_group", required=True),
        _code("method_code", "DE06.00.108.00", "followup_method"),
        Field("sbp", "integer", "DE04.10.174.00"),
        Field("dbp", "integer", "DE04.10.176.00"),
        Field("fasting_glucose", "number", "DE04.50.037.00"),
        _code("adherence_code", "HISX.03.013", "adherence"),
        _DOCTOR,
    ),
))

_add(DatasetSpec(
    "family_contract", "family_contracts", "contract_id", "signed_time",
    ("org_code", "contract_no"),
    title="家庭医生签约 (WS/T 790.17 签约服务)",
    fields=(
        Field("contract_no", "string", "HISX.03.014", required=True, max_length=30),
        _KEY,
        Field("team_code", "string", "HISX.02.003", required=True, max_length=20),
        _DOCTOR,
        Field("package_code_local", "string", "HISX.03.015", required=True, max_length=20),
        _code("package_code", "HISX.03.015", "service_package", required=True),
        Field("start_date", "date", "HISX.03.017", required=True),
        Field("end_date", "date", "HISX.03.017", required=True),
        _code("status_code", "HISX.03.016", "contract_status", required=True),
    ),
))


def _property(f: Field) -> dict[str, Any]:
    de = data_elements()[f.de]
    p: dict[str, Any] = {"x-data-element": f.de, "description": f"{de.name_zh} / {de.name_en}"
                         + (f" — {f.description}" if f.description else "")}
    if f.kind in ("string", "integer", "number", "boolean"):
        t: str = f.kind
    elif f.kind == "money":
        t = "number"
        p["x-sql-type"] = MONEY_SQL
    elif f.kind == "date":
        t = "string"
        p["format"] = "date"
        p["pattern"] = DATE_PATTERN
    elif f.kind == "datetime":
        t = "string"
        p["format"] = "date-time"
        p["pattern"] = DATETIME_PATTERN
    else:  # pragma: no cover - spec error
        raise ValueError(f"unknown field kind {f.kind}")
    p["type"] = t if f.required else [t, "null"]
    if f.value_set:
        vs = value_set(f.value_set)
        p["x-value-set"] = f.value_set
        p["x-code-system"] = vs.code_system
        p["x-edition"] = vs.edition
        p["enum"] = list(vs.codes) + ([] if f.required else [None])
        p["maxLength"] = max(len(c) for c in vs.codes)
    if f.code_system:
        p["x-code-system"] = f.code_system
    if f.max_length:
        p["maxLength"] = f.max_length
    if f.pattern:
        p["pattern"] = f.pattern
    p["x-edition-data-element"] = de.edition
    return p


def json_schema(dataset: str) -> dict[str, Any]:
    """The draft 2020-12 JSON Schema of one standardized dataset (built from its spec)."""
    spec = DATASETS[dataset]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{SCHEMA_BASE_URI}{dataset}.schema.json",
        "title": f"std_{dataset}",
        "description": spec.title,
        "type": "object",
        "x-source-table": spec.source_table,
        "x-business-time": spec.business_time,
        "x-natural-key": list(spec.natural_key),
        "properties": {f.name: _property(f) for f in spec.all_fields},
        "required": [f.name for f in spec.all_fields],
        "additionalProperties": False,
    }


def write_schemas(out_dir: Path = SCHEMA_DIR) -> list[Path]:
    """Write ``<dataset>.schema.json`` for every dataset; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in DATASETS:
        path = out_dir / f"{name}.schema.json"
        path.write_text(json.dumps(json_schema(name), ensure_ascii=False, indent=2) + "\n",
                        encoding="utf-8")
        paths.append(path)
    return paths


@cache
def load_schema(dataset: str) -> dict[str, Any]:
    """The committed schema file of a dataset (the published contract)."""
    return json.loads((SCHEMA_DIR / f"{dataset}.schema.json").read_text(encoding="utf-8"))
