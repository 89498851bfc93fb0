"""Column documentation for the marts, generated from the standard where a column is a
standardized field (data element id, meaning, value set) and written here where it is derived.
"""

from __future__ import annotations

from functools import cache

from hisx.standards.catalog import data_elements, value_set
from hisx.standards.datasets import DATASETS, Field

#: Derived columns (not std fields): meaning, unit, how computed.
DERIVED: dict[str, str] = {
    "period_start": "期间起始日 / period start: the business day, or the first day of the month "
                    "for monthly marts, or the first business day seen for dimensions",
    "center_name": "机构名称 / center name (organization, not personal data)",
    "his_vendor": "HIS 厂商 / HIS vendor the center runs (drives the code maps)",
    "dept_name": "科室名称 / department name: meaning of dept_code in value set department",
    "staff_code": "工号(源) / the center's local staff work code; names are not carried",
    "role": "角色 / staff role seen in the data: doctor | pharmacist",
    "icd3": "ICD-10 类目 / 3-character ICD-10 category of icd_code",
    "icd_chapter": "ICD-10 章 / ICD-10 chapter (roman numeral) of the category",
    "chapter_title": "ICD-10 章名称 / ICD-10 chapter title",
    "birth_year": "出生年份 / birth year (the full birth date is not carried)",
    "records": "档案数 / person records of the center sharing this person key",
    "year": "年 / calendar year", "quarter": "季度 / quarter 1-4", "month": "月 / month 1-12",
    "month_start": "月初 / first day of the month",
    "iso_dow": "星期 / ISO day of week, 1 = Monday", "is_weekend": "周末 / Saturday or Sunday",
    "is_valid": "有效就诊 / a real visit: status normal (1) and not deleted",
    "pay_class": "支付类别 / self (全自费 07) or insurance (every other payment method)",
    "refund_of_date": "原收费业务日期 / business day of the charge a refund refers to",
    "refund_matched": "退费已匹配 / refund's original charge found (NULL for non-refunds)",
    "rx_date": "处方日期 / business day of the prescription dispensed",
    "minutes_after_rx": "处方至发药分钟数 / minutes from prescription to dispensing",
    "is_controlled": "控制达标 / HTN: sbp < 140 and dbp < 90 mmHg; DM: fasting glucose < 7.0 "
                     "mmol/L; NULL when not measured",
    "visits": "就诊人次 / valid visits (normal, not deleted)",
    "first_visits": "初诊人次 / valid first visits (first_visit_code 1)",
    "return_visits": "复诊人次 / valid return visits (first_visit_code 2)",
    "outpatient": "门诊人次 / valid outpatient visits (visit_type_code 1)",
    "emergency": "急诊人次 / valid emergency visits (visit_type_code 2)",
    "cancelled": "退号数 / cancelled (status 2) or deleted registrations",
    "charges": "收费笔数 / charge rows that are not refunds",
    "refunds": "退费笔数 / refund rows",
    "gross_amount": "收费金额(元) / sum of non-refund charge amounts",
    "refund_amount": "退费金额(元) / sum of refund amounts (negative)",
    "net_amount": "净收入(元) / gross_amount + refund_amount (refunds netted)",
    "items": "处方明细行数 / prescription lines",
    "prescriptions": "处方数 / distinct prescriptions",
    "amount_rank": "金额排名 / rank by amount within tenant and month (1 = largest)",
    "quantity_rank": "数量排名 / rank by quantity within tenant and month (1 = largest)",
    "diagnoses": "诊断数 / diagnosis rows", "primary_diagnoses": "主诊断数 / primary diagnoses",
    "diagnosis_rank": "诊断排名 / rank by diagnoses within tenant and month (1 = most)",
    "managed_patients": "管理人数 / persons in the chronic registry (diagnosis or follow-up of "
                        "the group) by the end of the month",
    "new_patients": "新增管理人数 / registry persons first seen in the month",
    "followed_up_patients": "随访人数 / persons with a follow-up in the month",
    "followups": "随访次数 / follow-ups in the month",
    "followup_rate": "随访率 / followed_up_patients / managed_patients",
    "measured_patients": "测量人数 / persons whose last follow-up in the month was measured",
    "controlled_patients": "控制人数 / persons whose last follow-up in the month was controlled",
    "control_rate": "控制率 / controlled_patients / measured_patients",
    "contracted_residents": "签约居民数 / persons with a contract in force at month end",
    "new_contracts": "新签约数 / contracts signed in the month",
    "chronic_patients": "慢病患者数 / chronic registry persons (HTN or DM) by month end",
    "contracted_chronic_patients": "签约慢病患者数 / chronic patients with a contract in force",
    "chronic_coverage_rate": "慢病签约覆盖率 / contracted_chronic_patients / chronic_patients",
    "contracted_visits": "签约居民就诊人次 / valid visits by residents with a contract in force "
                         "at this center on the visit day",
    "contracted_visit_share": "签约居民就诊占比 / contracted_visits / visits",
    "dataset": "数据集 / standardized dataset name",
    "rows_in": "输入行数 / rows read (per business day: standardized + quarantined)",
    "standardized": "标准化行数 / rows standardized",
    "quarantined": "隔离行数 / rows quarantined",
    "deduplicated": "去重行数 / duplicate rows dropped",
    "batches": "批次数 / standardization batches",
    "conserved": "守恒 / rows_in = standardized + quarantined + deduplicated",
    "standardized_rate": "标准化率 / standardized / rows_in",
    "late_rows": "迟到行数 / rows that arrived on a later day than their business day",
    "avg_delay_hours": "平均到达延迟(小时) / mean of source arrival - business time",
    "max_delay_hours": "最大到达延迟(小时) / max of source arrival - business time",
    "value_set": "值域名 / value set name", "code": "代码 / code",
    "meaning_zh": "含义 / meaning (Chinese)", "meaning_en": "含义 / meaning (English)",
    "code_system": "代码系统 / code system", "edition": "版本 / edition",
    "code_from": "起始类目 / first category of the chapter",
    "code_to": "终止类目 / last category of the chapter",
    "title_zh": "章名称 / chapter title (Chinese)", "title_en": "章名称 / chapter title (English)",
    "chapter": "章 / ICD-10 chapter (roman numeral)",
}
for _k in ("unmapped", "invalid", "missing", "implausible", "inconsistent", "future", "orphan"):
    DERIVED[f"q_{_k}"] = f"隔离:{_k} / quarantined rows with a reason of kind {_k}"
DERIVED["q_other"] = "隔离:其他 / quarantined rows with no reason of the listed kinds"
DERIVED.update({
    "conformance": "一致性(符合性) / Kahn conformance: share of rows without unmapped or "
                   "invalid values",
    "completeness": "完整性 / Kahn completeness: share of rows without a missing required "
                    "element",
    "plausibility": "合理性 / Kahn plausibility: share of rows without implausible, "
                    "inconsistent or future values",
    "timeliness": "及时性 / timeliness: share of standardized rows that arrived on their "
                  "business day",
    "rx_without_visit": "处方无就诊 / consistency: prescriptions whose visit is not standardized",
    "rx_without_charge": "处方无收费 / consistency: prescriptions without any charge",
    "dispense_without_rx": "发药无处方 / consistency: dispenses whose prescription is not "
                           "standardized",
})


@cache
def std_fields() -> dict[str, Field]:
    """Std field by column name (first dataset defining it; same name = same data element)."""
    out: dict[str, Field] = {}
    for spec in DATASETS.values():
        for f in spec.all_fields:
            out.setdefault(f.name, f)
    return out


def _value_set_text(name: str) -> str:
    vs = value_set(name)
    codes = "; ".join(f"{c}={m}" for c, m in vs.codes.items())
    return f" Value set {name} ({vs.code_system}, {vs.edition}): {codes}"


def column_comment(column: str) -> str | None:
    """The documentation of a mart column, or None if it is unknown."""
    if column in DERIVED:
        return DERIVED[column]
    f = std_fields().get(column)
    if f is None:
        return None
    de = data_elements()[f.de]
    text = f"{f.de} {de.name_zh} / {de.name_en}" + (f" — {f.description}" if f.description else "")
    if f.value_set:
        text += "." + _value_set_text(f.value_set)
    if f.code_system:
        text += f". Code system: {f.code_system}"
    return text
