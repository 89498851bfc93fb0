-- Dimension: departments as seen in the visits, local code with its standard 诊疗科目 code.
-- Grain: tenant × local department code × standard code. Full refresh per tenant.
CREATE TABLE IF NOT EXISTS dim_department (
    tenant VARCHAR(40) NOT NULL,
    period_start DATE,
    dept_code_local VARCHAR(20) NOT NULL,
    dept_code VARCHAR(5) NOT NULL,
    dept_name VARCHAR(100)
);

DELETE FROM dim_department WHERE tenant = :tenant;

INSERT INTO dim_department
SELECT v.tenant, MIN(v.business_date), v.dept_code_local, v.dept_code, MAX(r.meaning_zh)
FROM std_outpatient_visit v
LEFT JOIN ref_value_set r ON r.value_set = 'department' AND r.code = v.dept_code
WHERE v.tenant = :tenant
GROUP BY v.tenant, v.dept_code_local, v.dept_code;
