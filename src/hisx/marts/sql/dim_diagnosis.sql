-- Dimension: diagnoses (ICD-10 national clinical edition) with the 3-character category,
-- the ICD-10 chapter and the chronic-disease group (HTN / DM).
-- Grain: tenant × ICD code. Full refresh per tenant.
CREATE TABLE IF NOT EXISTS dim_diagnosis (
    tenant VARCHAR(40) NOT NULL,
    period_start DATE,
    icd_code VARCHAR(20) NOT NULL,
    icd3 VARCHAR(3) NOT NULL,
    icd_code_system VARCHAR(40),
    diag_name VARCHAR(50),
    icd_chapter VARCHAR(5),
    chapter_title VARCHAR(60),
    disease_group VARCHAR(3)
);

DELETE FROM dim_diagnosis WHERE tenant = :tenant;

INSERT INTO dim_diagnosis
SELECT d.tenant, MIN(d.business_date), d.icd_code, SUBSTR(d.icd_code, 1, 3),
       MAX(d.icd_code_system), MAX(d.diag_name), MAX(c.chapter), MAX(c.title_zh),
       MAX(d.disease_group)
FROM std_diagnosis d
LEFT JOIN ref_icd10_chapter c ON SUBSTR(d.icd_code, 1, 3) BETWEEN c.code_from AND c.code_to
WHERE d.tenant = :tenant
GROUP BY d.tenant, d.icd_code;
