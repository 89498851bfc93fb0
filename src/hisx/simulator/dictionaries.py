"""Local dictionaries of the three HIS vendor dialects, as plain data.

Every coded column of the source schema holds a *local* code whose spelling depends on the HIS
product the center runs (``organizations.his_vendor``): ``vendor_a``, ``vendor_b`` or
``vendor_c``. This module is the ground truth of what each local code means, so that the
standard mapping tables can be authored from it (the simulator never reads those mappings).

How to read it
--------------
``CODESETS[field][vendor]`` is a dict ``{local_code: canonical_meaning}``; the canonical meaning
is a stable English word. ``FIELD_COLUMNS[field]`` lists the ``table.column`` places the field is
stored in. Example: ``CODESETS["gender"]["vendor_b"] == {"男": "male", "女": "female", "未知": "unknown"}``
and ``FIELD_COLUMNS["gender"] == ("patients.gender",)``.

Canonical meanings per field (the local spellings are in ``CODESETS``):

- gender: male, female, unknown (not known), unspecified (GB/T 2261.1 code 9)
- id_type: id_card (居民身份证), household_register, passport, military_officer, hk_macau_pass,
  taiwan_pass, other
- visit_kind: first (初诊), return (复诊)
- visit_type: outpatient (门诊), emergency (急诊)
- reg_status: normal, cancelled (退号)
- rx_type: western (西药处方), tcm_patent (中成药处方)
- route: oral, sublingual, subcutaneous, intramuscular, intravenous, inhalation, topical, eye_drop
- frequency: qd, bid, tid, qid, qn, prn, qw, st
- fee_category: registration (挂号费), western_drug (西药费), tcm_patent_drug (中成药费),
  examination (检查费), treatment (治疗费)
- pay_method: urban_employee_insurance, urban_resident_insurance, public_funded, self_pay
- insurance_type: urban_employee, urban_resident, public_funded, commercial, uninsured
- disease (chronic follow-up): hypertension, diabetes
- followup_method: clinic, home, phone
- adherence: regular, intermittent, none
- dispense_status: dispensed, returned
- contract_status: active, terminated
- staff_role: doctor, pharmacist, nurse
- service_package: basic, elderly, hypertension, diabetes
- ethnicity: han, mongol, hui, tibetan, uyghur, miao, zhuang, korean, manchu, tujia, other
- marital_status: unmarried, married, widowed, divorced, unknown

Departments: ``DEPARTMENTS[vendor]`` is ``{local_dept_code: (local_dept_name, canonical)}`` with
canonical in ``DEPT_CANONICAL`` (general_practice, internal_medicine, tcm, stomatology,
preventive_care, rehabilitation, emergency, gynecology, surgery, ophthalmology).

Drugs: ``DRUGS`` is the canonical list (key, generic name, spec, form, national insurance code
...); ``DRUG_CATALOGS[vendor]`` is a list of catalog rows, each with the vendor's local
``drug_code`` and the canonical ``key``; ``drug_code_map(vendor)`` gives
``{local_drug_code: canonical_key}``. The insurance codes follow the 23-character western (X)
layout of 医保药品分类与代码 (category + ATC level 4 + name + form + spec + maker) and a
20-character layout for 中成药 (Z); their segments are format-realistic, not official values.

Diagnosis codes are not local: doctors record national clinical edition ICD-10 codes
(``DIAGNOSES``).
"""

from __future__ import annotations

VENDORS: tuple[str, ...] = ("vendor_a", "vendor_b", "vendor_c")


def _cs(canon: tuple[str, ...], a: tuple[str, ...], b: tuple[str, ...], c: tuple[str, ...]):
    assert len(canon) == len(a) == len(b) == len(c)
    return {
        "vendor_a": dict(zip(a, canon, strict=True)),
        "vendor_b": dict(zip(b, canon, strict=True)),
        "vendor_c": dict(zip(c, canon, strict=True)),
    }


_ROUTES = ("oral", "sublingual", "subcutaneous", "intramuscular", "intravenous", "inhalation",
           "topical", "eye_drop")
_FREQ = ("qd", "bid", "tid", "qid", "qn", "prn", "qw", "st")
_ETH = ("han", "mongol", "hui", "tibetan", "uyghur", "miao", "zhuang", "korean", "manchu",
        "tujia", "other")

#: CODESETS[field][vendor] = {local_code: canonical_meaning}
CODESETS: dict[str, dict[str, dict[str, str]]] = {
    "gender": _cs(("male", "female", "unknown"), ("M", "F", "U"), ("男", "女", "未知"),
                  ("1", "2", "9")),
    "id_type": _cs(
        ("id_card", "household_register", "passport", "military_officer", "hk_macau_pass",
         "taiwan_pass", "other"),
        ("ID", "HR", "PP", "MO", "HM", "TW", "OT"),
        ("身份证", "户口簿", "护照", "军官证", "港澳通行证", "台胞证", "其他"),
        ("01", "02", "03", "04", "06", "07", "99")),
    "visit_kind": _cs(("first", "return"), ("F", "R"), ("初诊", "复诊"), ("1", "2")),
    "visit_type": _cs(("outpatient", "emergency"), ("OP", "EM"), ("门诊", "急诊"), ("1", "2")),
    "reg_status": _cs(("normal", "cancelled"), ("N", "C"), ("正常", "退号"), ("0", "9")),
    "rx_type": _cs(("western", "tcm_patent"), ("W", "P"), ("西药", "中成药"), ("1", "2")),
    "route": _cs(_ROUTES, ("PO", "SL", "IH", "IM", "IV", "INH", "TOP", "OD"),
                 ("口服", "舌下含服", "皮下注射", "肌注", "静滴", "吸入", "外用", "滴眼"),
                 ("1", "3", "401", "403", "404", "5", "6", "607")),
    "frequency": _cs(_FREQ, ("QD", "BID", "TID", "QID", "QN", "PRN", "QW", "ST"),
                     ("每日一次", "每日两次", "每日三次", "每日四次", "每晚一次", "必要时", "每周一次", "立即"),
                     ("qd", "bid", "tid", "qid", "qn", "prn", "qw", "st")),
    "fee_category": _cs(
        ("registration", "western_drug", "tcm_patent_drug", "examination", "treatment"),
        ("GH", "XY", "ZCY", "JC", "ZL"), ("挂号费", "西药费", "中成药费", "检查费", "治疗费"),
        ("13", "09", "11", "03", "05")),
    "pay_method": _cs(
        ("urban_employee_insurance", "urban_resident_insurance", "public_funded", "self_pay"),
        ("YB1", "YB2", "GF", "ZF"), ("职工医保", "居民医保", "公费医疗", "自费"),
        ("01", "02", "06", "07")),
    "insurance_type": _cs(
        ("urban_employee", "urban_resident", "public_funded", "commercial", "uninsured"),
        ("E", "R", "G", "C", "N"), ("职工医保", "居民医保", "公费", "商业保险", "无"),
        ("310", "390", "340", "SY", "000")),
    "disease": _cs(("hypertension", "diabetes"), ("HTN", "DM"), ("高血压", "糖尿病"), ("1", "2")),
    "followup_method": _cs(("clinic", "home", "phone"), ("CLINIC", "HOME", "PHONE"),
                           ("门诊", "家庭", "电话"), ("1", "2", "3")),
    "adherence": _cs(("regular", "intermittent", "none"), ("R", "I", "N"), ("规律", "间断", "不服药"),
                     ("1", "2", "3")),
    "dispense_status": _cs(("dispensed", "returned"), ("D", "R"), ("已发药", "已退药"), ("1", "2")),
    "contract_status": _cs(("active", "terminated"), ("A", "T"), ("有效", "解约"), ("1", "0")),
    "staff_role": _cs(("doctor", "pharmacist", "nurse"), ("DOC", "PHA", "NUR"),
                      ("医生", "药师", "护士"), ("1", "2", "3")),
    "service_package": _cs(("basic", "elderly", "hypertension", "diabetes"),
                           ("PKG-BASIC", "PKG-OLD", "PKG-HTN", "PKG-DM"),
                           ("基础包", "老年人包", "高血压包", "糖尿病包"), ("01", "02", "03", "04")),
    "ethnicity": _cs(_ETH, ("01", "02", "03", "04", "05", "06", "08", "10", "11", "15", "97"),
                     ("汉族", "蒙古族", "回族", "藏族", "维吾尔族", "苗族", "壮族", "朝鲜族", "满族",
                      "土家族", "其他"),
                     ("1", "2", "3", "4", "5", "6", "8", "10", "11", "15", "97")),
    "marital_status": _cs(("unmarried", "married", "widowed", "divorced", "unknown"),
                          ("S", "M", "W", "D", "U"), ("未婚", "已婚", "丧偶", "离婚", "未知"),
                          ("10", "20", "30", "40", "90")),
}

#: Where each coded field is stored.
FIELD_COLUMNS: dict[str, tuple[str, ...]] = {
    "gender": ("patients.gender",),
    "id_type": ("patients.id_type",),
    "visit_kind": ("registrations.visit_kind",),
    "visit_type": ("registrations.visit_type",),
    "reg_status": ("registrations.status",),
    "rx_type": ("prescriptions.rx_type",),
    "route": ("prescription_items.route",),
    "frequency": ("prescription_items.frequency",),
    "fee_category": ("charges.fee_category",),
    "pay_method": ("charges.pay_method",),
    "insurance_type": ("patients.insurance_type",),
    "disease": ("chronic_followups.disease",),
    "followup_method": ("chronic_followups.method",),
    "adherence": ("chronic_followups.adherence",),
    "dispense_status": ("dispenses.status",),
    "contract_status": ("family_contracts.status",),
    "staff_role": ("staff.role",),
    "service_package": ("family_contracts.package_code",),
    "ethnicity": ("patients.ethnicity",),
    "marital_status": ("patients.marital_status",),
    "department": ("departments.dept_code", "registrations.dept_code", "staff.dept_code"),
    "drug": ("drug_catalog.drug_code", "prescription_items.drug_code"),
}


def local_code(vendor: str, field: str, canonical: str) -> str:
    """The vendor's local code for a canonical meaning."""
    for local, canon in CODESETS[field][vendor].items():
        if canon == canonical:
            return local
    raise KeyError(f"{field}: no local code for {canonical!r} in {vendor}")


def to_local(vendor: str, field: str) -> dict[str, str]:
    """{canonical: local_code} for one vendor and field."""
    return {canon: local for local, canon in CODESETS[field][vendor].items()}


DEPT_CANONICAL: tuple[str, ...] = (
    "general_practice", "internal_medicine", "tcm", "stomatology", "preventive_care",
    "rehabilitation", "emergency", "gynecology", "surgery", "ophthalmology",
)
_DEPT_NAMES = {
    "vendor_a": ("全科", "内科", "中医科", "口腔科", "预防保健科", "康复科", "急诊科", "妇科", "外科", "眼科"),
    "vendor_b": ("全科医疗科", "内科门诊", "中医科", "口腔科", "预防保健科", "康复医学科", "急诊科", "妇科门诊",
                 "外科门诊", "眼科门诊"),
    "vendor_c": ("全科门诊", "内科", "中医门诊", "口腔门诊", "预防保健", "康复科", "急诊", "妇科", "外科", "五官眼科"),
}
_DEPT_CODES = {
    "vendor_a": ("QK01", "NK01", "ZY01", "KQ01", "YF01", "KF01", "JZ01", "FK01", "WK01", "YK01"),
    "vendor_b": ("1001", "1002", "1010", "1020", "1030", "1040", "1050", "1060", "1070", "1080"),
    "vendor_c": ("0301", "0302", "0350", "0512", "0700", "2100", "0200", "0501", "0401", "1101"),
}
#: DEPARTMENTS[vendor] = {local_dept_code: (local_dept_name, canonical)}
DEPARTMENTS: dict[str, dict[str, tuple[str, str]]] = {
    v: {code: (name, canon) for code, name, canon in
        zip(_DEPT_CODES[v], _DEPT_NAMES[v], DEPT_CANONICAL, strict=True)}
    for v in VENDORS
}

#: Canonical drugs: key, name, spec, dosage form, dose, dose unit, route, frequency,
#: dose units per day (in pack units), units per pack, price per pack, kind, insurance code.
_DRUG_ROWS: tuple[tuple, ...] = (
    ("amlodipine", "苯磺酸氨氯地平片", "5mg*28片", "片剂", 5, "mg", "oral", "qd", 1, 28, 4.62, "western", "XC08CAA063A001010100483"),
    ("nifedipine_cr", "硝苯地平控释片", "30mg*7片", "控释片", 30, "mg", "oral", "qd", 1, 7, 22.80, "western", "XC08CAX056A005020101213"),
    ("valsartan", "缬沙坦胶囊", "80mg*28粒", "胶囊", 80, "mg", "oral", "qd", 1, 28, 13.86, "western", "XC09CAX123A012010100594"),
    ("irbesartan", "厄贝沙坦片", "150mg*28片", "片剂", 150, "mg", "oral", "qd", 1, 28, 11.20, "western", "XC09CAE052A001020100318"),
    ("metoprolol", "酒石酸美托洛尔片", "25mg*20片", "片剂", 25, "mg", "oral", "bid", 2, 20, 6.80, "western", "XC07ABM089A001010100735"),
    ("hctz", "氢氯噻嗪片", "25mg*100片", "片剂", 25, "mg", "oral", "qd", 1, 100, 8.20, "western", "XC03AAQ021A001010101102"),
    ("metformin", "盐酸二甲双胍片", "0.5g*60片", "片剂", 0.5, "g", "oral", "bid", 2, 60, 9.90, "western", "XA10BAE014A001020100227"),
    ("glimepiride", "格列美脲片", "2mg*30片", "片剂", 2, "mg", "oral", "qd", 1, 30, 16.30, "western", "XA10BBG088A001010100863"),
    ("acarbose", "阿卡波糖片", "50mg*30片", "片剂", 50, "mg", "oral", "tid", 3, 30, 19.80, "western", "XA10BFA011A001010100512"),
    ("insulin_glargine", "甘精胰岛素注射液", "300U/3ml/支", "注射液", 12, "U", "subcutaneous", "qd", 12, 300, 68.00, "western", "XA10AEG022B002030100947"),
    ("insulin_premix", "精蛋白人胰岛素混合注射液(30R)", "300U/3ml/支", "注射液", 10, "U", "subcutaneous", "bid", 20, 300, 45.00, "western", "XA10ADJ031B002030100947"),
    ("aspirin", "阿司匹林肠溶片", "100mg*30片", "肠溶片", 100, "mg", "oral", "qd", 1, 30, 13.50, "western", "XB01ACA061A006010100375"),
    ("atorvastatin", "阿托伐他汀钙片", "20mg*7片", "片剂", 20, "mg", "oral", "qn", 1, 7, 8.70, "western", "XC10AAA064A001010100686"),
    ("rosuvastatin", "瑞舒伐他汀钙片", "10mg*28片", "片剂", 10, "mg", "oral", "qn", 1, 28, 12.30, "western", "XC10AAR063A001010101287"),
    ("clopidogrel", "硫酸氢氯吡格雷片", "75mg*28片", "片剂", 75, "mg", "oral", "qd", 1, 28, 21.40, "western", "XB01ACL041A001010100294"),
    ("isosorbide_mn", "单硝酸异山梨酯缓释片", "40mg*24片", "缓释片", 40, "mg", "oral", "qd", 1, 24, 16.90, "western", "XC01DAD097A005010100451"),
    ("amoxicillin", "阿莫西林胶囊", "0.25g*24粒", "胶囊", 0.5, "g", "oral", "tid", 6, 24, 7.60, "western", "XJ01CAA049A012010100118"),
    ("cefaclor", "头孢克洛胶囊", "0.25g*12粒", "胶囊", 0.25, "g", "oral", "tid", 3, 12, 18.60, "western", "XJ01DCT073A012010100729"),
    ("levofloxacin", "左氧氟沙星片", "0.5g*6片", "片剂", 0.5, "g", "oral", "qd", 1, 6, 14.20, "western", "XJ01MAZ084A001020100341"),
    ("azithromycin", "阿奇霉素片", "0.25g*6片", "片剂", 0.5, "g", "oral", "qd", 2, 6, 15.80, "western", "XJ01FAA094A001010100655"),
    ("cold_compound", "复方氨酚烷胺片", "12片", "片剂", 1, "片", "oral", "bid", 2, 12, 9.80, "western", "XN02BEF062A001010100806"),
    ("ambroxol", "盐酸氨溴索片", "30mg*20片", "片剂", 30, "mg", "oral", "tid", 3, 20, 8.90, "western", "XR05CBA092A001010100207"),
    ("omeprazole", "奥美拉唑肠溶胶囊", "20mg*14粒", "肠溶胶囊", 20, "mg", "oral", "qd", 1, 14, 10.50, "western", "XA02BCA077A013010100562"),
    ("hydrotalcite", "铝碳酸镁咀嚼片", "0.5g*20片", "咀嚼片", 1, "g", "oral", "tid", 6, 20, 14.60, "western", "XA02ADL078A008010100419"),
    ("domperidone", "多潘立酮片", "10mg*30片", "片剂", 10, "mg", "oral", "tid", 3, 30, 16.80, "western", "XA03FAD087A001010100926"),
    ("ibuprofen", "布洛芬缓释胶囊", "0.3g*20粒", "缓释胶囊", 0.3, "g", "oral", "bid", 2, 20, 12.90, "western", "XM01AEB051A014010100132"),
    ("diclofenac", "双氯芬酸钠缓释片", "75mg*10片", "缓释片", 75, "mg", "oral", "qd", 1, 10, 11.20, "western", "XM01ABS029A005010100274"),
    ("estazolam", "艾司唑仑片", "1mg*20片", "片剂", 1, "mg", "oral", "qn", 1, 20, 4.80, "western", "XN05CDA035A001010100888"),
    ("salbutamol", "硫酸沙丁胺醇吸入气雾剂", "100μg*200揿", "气雾剂", 200, "μg", "inhalation", "prn", 4, 200, 23.50, "western", "XR03ACS013C003010100533"),
    ("metronidazole", "甲硝唑片", "0.2g*21片", "片剂", 0.4, "g", "oral", "tid", 6, 21, 5.40, "western", "XJ01XDJ016A001010100617"),
    ("levofloxacin_eye", "左氧氟沙星滴眼液", "5ml:15mg", "滴眼剂", 1, "滴", "eye_drop", "qid", 4, 100, 18.00, "western", "XS01AEZ085D010010100341"),
    ("mecobalamin", "甲钴胺片", "0.5mg*20片", "片剂", 0.5, "mg", "oral", "tid", 3, 20, 19.60, "western", "XB03BAJ069A001010100719"),
    ("loratadine", "氯雷他定片", "10mg*6片", "片剂", 10, "mg", "oral", "qd", 1, 6, 11.50, "western", "XR06AXL038A001010100248"),
    ("nitroglycerin", "硝酸甘油片", "0.5mg*100片", "舌下片", 0.5, "mg", "sublingual", "prn", 1, 100, 15.20, "western", "XC01DAX015A009010100368"),
    ("lianhua_qingwen", "连花清瘟胶囊", "0.35g*24粒", "胶囊", 1.4, "g", "oral", "tid", 12, 24, 27.80, "tcm_patent", "ZA01AAL0123010100456"),
    ("banlangen", "板蓝根颗粒", "10g*20袋", "颗粒剂", 10, "g", "oral", "tid", 3, 20, 15.00, "tcm_patent", "ZA01BAB0207020100561"),
    ("jizhi_syrup", "急支糖浆", "200ml/瓶", "糖浆剂", 20, "ml", "oral", "tid", 60, 200, 19.50, "tcm_patent", "ZA05BAJ0311030100672"),
    ("danshen_pills", "复方丹参滴丸", "27mg*180丸", "滴丸", 270, "mg", "oral", "tid", 30, 180, 32.40, "tcm_patent", "ZA12BAF0415040100783"),
    ("tongxinluo", "通心络胶囊", "0.26g*30粒", "胶囊", 0.78, "g", "oral", "tid", 9, 30, 38.60, "tcm_patent", "ZA12CAT0519010100894"),
    ("shangshi_plaster", "伤湿止痛膏", "7cm*10cm*10贴", "贴膏剂", 1, "贴", "topical", "qd", 1, 10, 9.50, "tcm_patent", "ZA16AAS0623050100905"),
    ("xiaoyao_pills", "逍遥丸", "200丸/瓶", "浓缩丸", 8, "丸", "oral", "tid", 24, 200, 18.00, "tcm_patent", "ZA06AAX0727060101016"),
    ("liuwei_dihuang", "六味地黄丸", "200丸/瓶", "浓缩丸", 8, "丸", "oral", "tid", 24, 200, 21.00, "tcm_patent", "ZA09AAL0831060101127"),
    ("yangxue_qingnao", "养血清脑颗粒", "4g*15袋", "颗粒剂", 4, "g", "oral", "tid", 3, 15, 45.00, "tcm_patent", "ZA13BAY0935020101238"),
)
_DRUG_FIELDS = ("key", "drug_name", "spec", "dosage_form", "dose", "dose_unit", "route",
                "frequency", "units_per_day", "pack_units", "unit_price", "kind",
                "insurance_code")
#: Canonical drug list (dicts); ``route``/``frequency`` are canonical meanings.
DRUGS: tuple[dict, ...] = tuple(dict(zip(_DRUG_FIELDS, r, strict=True)) for r in _DRUG_ROWS)
DRUG_INDEX: dict[str, int] = {d["key"]: i for i, d in enumerate(DRUGS)}


def _drug_code(vendor: str, i: int, kind: str) -> str:
    if vendor == "vendor_a":
        return f"YP{1000 + i * 7:05d}"
    if vendor == "vendor_b":
        return f"{30010000 + i * 13}"
    return f"{'XY' if kind == 'western' else 'ZC'}{i + 1:03d}"


#: DRUG_CATALOGS[vendor] = list of catalog rows: drug_code (local), key (canonical) + DRUGS fields.
DRUG_CATALOGS: dict[str, list[dict]] = {
    v: [{"drug_code": _drug_code(v, i, d["kind"]), **d} for i, d in enumerate(DRUGS)]
    for v in VENDORS
}


def drug_code_map(vendor: str) -> dict[str, str]:
    """{local_drug_code: canonical drug key} for one vendor."""
    return {row["drug_code"]: row["key"] for row in DRUG_CATALOGS[vendor]}


def dept_code_map(vendor: str) -> dict[str, str]:
    """{local_dept_code: canonical department} for one vendor."""
    return {code: canon for code, (_name, canon) in DEPARTMENTS[vendor].items()}


#: National clinical edition ICD-10 codes used by the simulator: code -> name.
DIAGNOSES: dict[str, str] = {
    "I10.x00x002": "高血压", "I10.x00": "特发性（原发性）高血压", "I11.900": "高血压心脏病",
    "E11.900": "2型糖尿病", "E14.900x001": "糖尿病", "E78.500": "高脂血症",
    "J06.900": "急性上呼吸道感染", "J00.x00": "急性鼻咽炎［感冒］", "J20.900": "急性支气管炎",
    "K29.500": "慢性胃炎", "K30.x00": "功能性消化不良", "M54.500": "下背痛",
    "I25.100": "动脉硬化性心脏病", "I63.900": "脑梗死", "G47.000": "失眠症", "R51.x00": "头痛",
    "J44.900": "慢性阻塞性肺病", "N39.000": "泌尿道感染", "Z00.000": "一般性医学检查",
    "K02.900": "龋病", "N76.000": "急性阴道炎", "H10.900": "结膜炎", "S61.900": "手部开放性伤口",
    "R50.900": "发热", "R10.400": "腹痛", "T78.400": "变态反应", "J18.900": "肺炎",
}

#: The three pilot centers (Shanghai Pudong, GB/T 2260 310115).
PILOT_CENTERS: tuple[dict, ...] = (
    {"short": "gaohang", "org_name": "上海市浦东新区高行社区卫生服务中心", "vendor": "vendor_a",
     "division_code": "310115", "town": "高行镇", "orgcode8": "42500061"},
    {"short": "sanlin", "org_name": "上海市浦东新区三林康德社区卫生服务中心", "vendor": "vendor_b",
     "division_code": "310115", "town": "三林镇", "orgcode8": "42500213"},
    {"short": "heshahangcheng", "org_name": "上海市浦东新区鹤沙航城社区卫生服务中心", "vendor": "vendor_c",
     "division_code": "310115", "town": "航头镇", "orgcode8": "42500358"},
)

#: Shanghai county-level divisions (GB/T 2260) for generated centers and addresses.
SHANGHAI_DISTRICTS: tuple[tuple[str, str], ...] = (
    ("310101", "黄浦区"), ("310104", "徐汇区"), ("310105", "长宁区"), ("310106", "静安区"),
    ("310107", "普陀区"), ("310109", "虹口区"), ("310110", "杨浦区"), ("310112", "闵行区"),
    ("310113", "宝山区"), ("310114", "嘉定区"), ("310115", "浦东新区"), ("310116", "金山区"),
    ("310117", "松江区"), ("310118", "青浦区"), ("310120", "奉贤区"), ("310151", "崇明区"),
)
#: Birth-place divisions for ID numbers (locals and migrants).
ID_DIVISIONS: tuple[str, ...] = (
    "310115", "310115", "310115", "310115", "310110", "310104", "310101", "310107", "320102",
    "320583", "330102", "340104", "341221", "360102", "410102", "420102", "430104", "510104",
    "370102", "350102",
)
TOWNS: tuple[str, ...] = (
    "东明", "潍坊", "塘桥", "洋泾", "陆家嘴", "周家渡", "上钢", "南码头", "花木", "金杨", "张江",
    "北蔡", "川沙", "周浦", "康桥", "惠南", "祝桥", "唐镇", "曹路", "合庆", "高桥", "金桥", "江川",
    "莘庄", "梅陇", "七宝", "颛桥", "华漕", "虹桥", "古美",
)
ROADS: tuple[str, ...] = (
    "东靖路", "杨高北路", "高行路", "东陆路", "上南路", "三林路", "长清路", "航头路", "沪南公路",
    "鹤驰路", "航都路", "浦东南路", "张杨路", "锦绣路", "川沙路", "康桥路",
)
SURNAMES: tuple[str, ...] = tuple(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤")
GIVEN_CHARS: tuple[str, ...] = tuple(
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍建国红志文斌辉鹏飞宇浩凯晨欣怡雪梅婷琳慧晓燕云峰海波宁佳俊杰丹阳")
