"""Reference tables the marts join: value-set meanings (from the standard) and ICD-10 chapters.

Both are full-refresh and deterministic: they are rebuilt from the standard's data files on
every :func:`hisx.marts.runner.ensure_marts`, so a map-version change shows up in the marts.
"""

from __future__ import annotations

import pyarrow as pa

from hisx.connectors.warehouse import Warehouse
from hisx.standards.catalog import value_sets

REF_DDL = (
    """CREATE TABLE IF NOT EXISTS ref_value_set (
        value_set VARCHAR(40) NOT NULL, code VARCHAR(20) NOT NULL,
        meaning_zh VARCHAR(100) NOT NULL, meaning_en VARCHAR(100) NOT NULL,
        code_system VARCHAR(80) NOT NULL, edition VARCHAR(200) NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS ref_icd10_chapter (
        chapter VARCHAR(5) NOT NULL, code_from VARCHAR(3) NOT NULL, code_to VARCHAR(3) NOT NULL,
        title_zh VARCHAR(60) NOT NULL, title_en VARCHAR(100) NOT NULL)""",
)

#: ICD-10 chapters (WHO ICD-10 / GB/T 14396 chapter ranges); the national clinical edition
#: keeps the same 3-character categories.
ICD10_CHAPTERS: tuple[tuple[str, str, str, str, str], ...] = (
    ("I", "A00", "B99", "某些传染病和寄生虫病", "Certain infectious and parasitic diseases"),
    ("II", "C00", "D48", "肿瘤", "Neoplasms"),
    ("III", "D50", "D89", "血液及造血器官疾病和某些涉及免疫机制的疾患",
     "Diseases of the blood and immune mechanism"),
    ("IV", "E00", "E90", "内分泌、营养和代谢疾病", "Endocrine, nutritional and metabolic diseases"),
    ("V", "F00", "F99", "精神和行为障碍", "Mental and behavioural disorders"),
    ("VI", "G00", "G99", "神经系统疾病", "Diseases of the nervous system"),
    ("VII", "H00", "H59", "眼和附器疾病", "Diseases of the eye and adnexa"),
    ("VIII", "H60", "H95", "耳和乳突疾病", "Diseases of the ear and mastoid process"),
    ("IX", "I00", "I99", "循环系统疾病", "Diseases of the circulatory system"),
    ("X", "J00", "J99", "呼吸系统疾病", "Diseases of the respiratory system"),
    ("XI", "K00", "K93", "消化系统疾病", "Diseases of the digestive system"),
    ("XII", "L00", "L99", "皮肤和皮下组织疾病", "Diseases of the skin and subcutaneous tissue"),
    ("XIII", "M00", "M99", "肌肉骨骼系统和结缔组织疾病",
     "Diseases of the musculoskeletal system and connective tissue"),
    ("XIV", "N00", "N99", "泌尿生殖系统疾病", "Diseases of the genitourinary system"),
    ("XV", "O00", "O99", "妊娠、分娩和产褥期", "Pregnancy, childbirth and the puerperium"),
    ("XVI", "P00", "P96", "起源于围生期的某些情况", "Certain conditions originating in the perinatal period"),
    ("XVII", "Q00", "Q99", "先天性畸形、变形和染色体异常",
     "Congenital malformations and chromosomal abnormalities"),
    ("XVIII", "R00", "R99", "症状、体征和临床与实验室异常所见",
     "Symptoms, signs and abnormal findings, not elsewhere classified"),
    ("XIX", "S00", "T98", "损伤、中毒和外因的某些其他后果",
     "Injury, poisoning and other consequences of external causes"),
    ("XX", "V01", "Y98", "疾病和死亡的外因", "External causes of morbidity and mortality"),
    ("XXI", "Z00", "Z99", "影响健康状态和与保健机构接触的因素",
     "Factors influencing health status and contact with health services"),
    ("XXII", "U00", "U99", "用于特殊目的的编码", "Codes for special purposes"),
)


def value_set_table() -> pa.Table:
    rows = sorted((vs.name, code, zh, vs.meanings_en.get(code, ""), vs.code_system, vs.edition)
                  for vs in value_sets().values() for code, zh in vs.codes.items())
    cols = ["value_set", "code", "meaning_zh", "meaning_en", "code_system", "edition"]
    return pa.table({c: [r[i] for r in rows] for i, c in enumerate(cols)})


def icd10_table() -> pa.Table:
    cols = ["chapter", "code_from", "code_to", "title_zh", "title_en"]
    return pa.table({c: [r[i] for r in ICD10_CHAPTERS] for i, c in enumerate(cols)})


def ensure_reference(wh: Warehouse) -> None:
    """Create and (re)fill the reference tables in one transaction."""
    for ddl in REF_DDL:
        wh.execute(ddl)
    with wh.transaction():
        wh.execute("DELETE FROM ref_value_set")
        wh.load_arrow("ref_value_set", value_set_table())
        wh.execute("DELETE FROM ref_icd10_chapter")
        wh.load_arrow("ref_icd10_chapter", icd10_table())
