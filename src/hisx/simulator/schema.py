"""The production HIS schema of the community cloud HIS, as SQLAlchemy Core metadata.

One schema for all centers (tenants): every row carries ``org_code``. Every table has a
surrogate bigint primary key, ``updated_at`` (arrival time in the database) and
``row_version``: a database-wide monotonically increasing bigint that plays the part of
SQL Server's ``rowversion`` (on mssql the column *is* ``ROWVERSION``). Each table names its
business-time column in ``table.info["business_time"]`` and its natural key in
``table.info["natural_key"]``.

Coded columns hold each center's *local* codes and spellings: standardization maps them.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    Unicode,
)
from sqlalchemy.dialects import mssql

metadata = MetaData()

#: DATETIME2(7) on SQL Server keeps 100 ns precision; elsewhere a plain timestamp.
Timestamp = DateTime().with_variant(mssql.DATETIME2(precision=7), "mssql")
#: rowversion on SQL Server (server-generated); a sequence-fed bigint elsewhere.
RowVersion = BigInteger().with_variant(mssql.ROWVERSION(), "mssql")
Money = Numeric(12, 2)


def _audit() -> list[Column]:
    return [
        Column("updated_at", Timestamp, nullable=False),
        Column("row_version", RowVersion, nullable=False),
    ]


def _table(name: str, business_time: str | None, natural_key: tuple[str, ...], *cols) -> Table:
    t = Table(name, metadata, *cols, *_audit())
    t.info["business_time"] = business_time
    t.info["natural_key"] = natural_key
    Index(f"ix_{name}_rv", t.c.row_version, unique=True)
    Index(f"ix_{name}_org_rv", t.c.org_code, t.c.row_version)
    return t


organizations = _table(
    "organizations", None, ("org_code",),
    Column("org_id", BigInteger, primary_key=True, autoincrement=False),
    Column("org_code", String(22), nullable=False, unique=True),  # 22-char 医疗机构登记号
    Column("org_name", Unicode(70), nullable=False),
    Column("uscc", String(18)),  # 统一社会信用代码
    Column("division_code", String(6)),  # GB/T 2260 county code
    Column("his_vendor", String(20), nullable=False),  # HIS product/dialect the center runs
)

departments = _table(
    "departments", None, ("org_code", "dept_code"),
    Column("dept_id", BigInteger, primary_key=True, autoincrement=False),
    Column("org_code", String(22), nullable=False),
    Column("dept_code", Unicode(20), nullable=False),  # local code
    Column("dept_name", Unicode(50), nullable=False),
)

staff = _table(
    "staff", None, ("org_code", "staff_code"),
    Column("staff_id", BigInteger, primary_key=True, autoincrement=False),
    Column("org_code", String(22), nullable=False),
    Column("staff_code", Unicode(20), nullable=False),  # local id
    Column("staff_name", Unicode(50), nullable=False),
    Column("role", Unicode(20), nullable=False),  # doctor | pharmacist | nurse (local words)
    Column("dept_code", Unicode(20)),
    Column("team_code", Unicode(20)),  # family-doctor team
)

drug_catalog = _table(
    "drug_catalog", None, ("org_code", "drug_code"),
    Column("drug_id", BigInteger, primary_key=True, autoincrement=False),
    Column("org_code", String(22), nullable=False),
    Column("drug_code", Unicode(30), nullable=False),  # local catalog code
    Column("drug_name", Unicode(50), nullable=False),
    Column("spec", Unicode(30)),
    Column("dosage_form", Unicode(20)),
    Column("dose_unit", Unicode(10)),
    Column("unit_price", Money, nullable=False),
    Column("insurance_code", String(23)),  # 医保药品分类与代码
)

patients = _table(
    "patients", "created_at", ("org_code", "patient_no"),
    Column("patient_id", BigInteger, primary_key=True, autoincrement=False),
    Column("org_code", String(22), nullable=False),
    Column("patient_no", Unicode(20), nullable=False),
    Column("name", Unicode(50), nullable=False),
    Column("gender", Unicode(10)),  # local code/spelling
    Column("birth_date", Date),
    Column("id_type", Unicode(10)),  # local code for the ID document type
    Column("id_no", Unicode(32)),  # national ID number (GB 11643) when id_type is the ID card
    Column("phone", Unicode(20)),
    Column("division_code", String(6)),
    Column("address", Unicode(100)),
    Column("ethnicity", Unicode(10)),
    Column("marital_status", Unicode(10)),
    Column("insurance_type", Unicode(10)),
    Column("is_deleted", SmallInteger, nullable=False, default=0),
    Column("created_at", Timestamp, nullable=False),
)

registrations = _table(
    "registrations", "reg_time", ("org_code", "visit_no"),
    Column("reg_id", BigInteger, primary_key=True, autoincrement=False),
    Column("org_code", String(22), nullable=False),
    Column("visit_no", Unicode(18), nullable=False),  # 门(急)诊号
    Column("patient_id", BigInteger, nullable=False),
    Column("dept_code", Unicode(20), nullable=False),
    Column("doctor_code", Unicode(20), nullable=False),
    Column("reg_time", Timestamp, nullable=False),
    Column("visit_kind", Unicode(10), nullable=False),  # first/return, local spelling
    Column("visit_type", Unicode(10), nullable=False),  # outpatient/emergency, local spelling
    Column("reg_fee", Money, nullable=False),
    Column("status", Unicode(10), nullable=False),  # normal / cancelled (退号), local spelling
    Column("is_deleted", SmallInteger, nullable=False, default=0),
)

diagnoses = _table(
    "diagnoses", "diag_time", ("org_code", "reg_id", "seq_no"),
    Column("diag_id", BigInteger, primary_key=True, autoincrement=False),
    Column("org_code", String(22), nullable=False),
    Column("reg_id", BigInteger, nullable=False),
    Column("seq_no", Integer, nullable=False),
    Column("icd_code", Unicode(20)),  # national clinical edition, e.g. I10.x00x002
    Column("diag_name", Unicode(50)),
    Column("is_primary", SmallInteger, nullable=False),
    Column("diag_time", Timestamp, nullable=False),
)

prescriptions = _table(
    "prescriptions", "rx_time", ("org_code", "rx_no"),
    Column("rx_id", BigInteger, primary_key=True, autoincrement=False),
    Column("org_code", String(22), nullable=False),
    Column("rx_no", Unicode(30), nullable=False),
    Column("reg_id", BigInteger, nullable=False),
    Column("doctor_code", Unicode(20), nullable=False),
    Column("rx_time", Timestamp, nullable=False),
    Column("rx_type", Unicode(10), nullable=False),  # western / TCM, local spelling
    Column("total_amount", Money, nullable=False),
)

prescription_items = _table(
    "prescription_items", "rx_time", ("org_code", "rx_id", "line_no"),
    Column("item_id", BigInteger, primary_key=True, autoincrement=False),
    Column("org_code", String(22), nullable=False),
    Column("rx_id", BigInteger, nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("drug_code", Unicode(30), nullable=False),  # local catalog code
    Column("drug_name", Unicode(50)),
    Column("spec", Unicode(30)),
    Column("dosage_form", Unicode(20)),
    Column("dose", Numeric(8, 2)),
    Column("dose_unit", Unicode(10)),
    Column("route", Unicode(10)),  # local spelling
    Column("frequency", Unicode(10)),  # local spelling (qd, bid, ...)
    Column("days", Integer),
    Column("quantity", Numeric(10, 2), nullable=False),
    Column("unit_price", Money, nullable=False),
    Column("amount", Money, nullable=False),
    Column("rx_time", Timestamp, nullable=False),
)

charges = _table(
    "charges", "charge_time", ("org_code", "charge_no"),
    Column("charge_id", BigInteger, primary_key=True, autoincrement=False),
    Column("org_code", String(22), nullable=False),
    Column("charge_no", Unicode(30), nullable=False),
    Column("reg_id", BigInteger, nullable=False),
    Column("rx_id", BigInteger),
    Column("fee_category", Unicode(10), nullable=False),  # local code
    Column("amount", Money, nullable=False),  # negative for a refund
    Column("pay_method", Unicode(10), nullable=False),  # local code
    Column("insurance_amount", Money, nullable=False),
    Column("self_amount", Money, nullable=False),
    Column("charge_time", Timestamp, nullable=False),
    Column("refund_of", BigInteger),  # charge_id of the original charge for a refund
)

dispenses = _table(
    "dispenses", "dispense_time", ("org_code", "rx_id"),
    Column("dispense_id", BigInteger, primary_key=True, autoincrement=False),
    Column("org_code", String(22), nullable=False),
    Column("rx_id", BigInteger, nullable=False),
    Column("pharmacist_code", Unicode(20), nullable=False),
    Column("dispense_time", Timestamp, nullable=False),
    Column("status", Unicode(10), nullable=False),  # dispensed / returned, local spelling
)

chronic_followups = _table(
    "chronic_followups", "followup_time", ("org_code", "followup_id"),
    Column("followup_id", BigInteger, primary_key=True, autoincrement=False),
    Column("org_code", String(22), nullable=False),
    Column("patient_id", BigInteger, nullable=False),
    Column("disease", Unicode(10), nullable=False),  # HTN / DM, local spelling
    Column("followup_time", Timestamp, nullable=False),
    Column("method", Unicode(10)),  # clinic / home / phone, local spelling
    Column("sbp", Integer),
    Column("dbp", Integer),
    Column("fasting_glucose", Numeric(4, 1)),  # mmol/L
    Column("adherence", Unicode(10)),  # regular / intermittent / none, local spelling
    Column("doctor_code", Unicode(20), nullable=False),
)

family_contracts = _table(
    "family_contracts", "signed_time", ("org_code", "contract_no"),
    Column("contract_id", BigInteger, primary_key=True, autoincrement=False),
    Column("org_code", String(22), nullable=False),
    Column("contract_no", Unicode(30), nullable=False),
    Column("patient_id", BigInteger, nullable=False),
    Column("team_code", Unicode(20), nullable=False),
    Column("doctor_code", Unicode(20), nullable=False),
    Column("package_code", Unicode(20), nullable=False),
    Column("signed_time", Timestamp, nullable=False),
    Column("start_date", Date, nullable=False),
    Column("end_date", Date, nullable=False),
    Column("status", Unicode(10), nullable=False),
)

#: Tables in dependency order (parents first).
TABLES: tuple[Table, ...] = (
    organizations, departments, staff, drug_catalog, patients, registrations, diagnoses,
    prescriptions, prescription_items, charges, dispenses, chronic_followups, family_contracts,
)


def primary_key(table: Table) -> str:
    """The single surrogate primary-key column of a source table."""
    (col,) = table.primary_key.columns
    return col.name
