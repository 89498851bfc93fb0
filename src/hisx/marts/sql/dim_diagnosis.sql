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
SELECT d.tenant, d.first_day, d.icd_code, SUBSTR(d.icd_code, 1, 3), d.icd_code_system,
       d.diag_name, MAX(c.chapter), MAX(c.title_zh), d.disease_group
FROM (
    -- one row per code before the chapter's range join (a range join of every diagnosis
    -- row cost seconds at city scale; the chapter depends on the code alone)
    SELECT tenant, icd_code, MIN(business_date) AS first_day,
           MAX(icd_code_system) AS icd_code_system, MAX(diag_name) AS diag_name,
           MAX(disease_group) AS disease_group
    FROM std_diagnosis
    WHERE tenant = :tenant
    GROUP BY tenant, icd_code
) d
LEFT JOIN ref_icd10_chapter c ON SUBSTR(d.icd_code, 1, 3) BETWEEN c.code_from AND c.code_to
GROUP BY d.tenant, d.first_day, d.icd_code, d.icd_code_system, d.diag_name, d.disease_group;
