-- Dimension: drugs, the center's local catalog code with its NHSA standard code.
-- Grain: tenant × local drug code × NHSA code. Full refresh per tenant.
CREATE TABLE IF NOT EXISTS dim_drug (
    tenant VARCHAR(40) NOT NULL,
    period_start DATE,
    drug_code_local VARCHAR(30) NOT NULL,
    drug_code VARCHAR(23) NOT NULL,
    drug_name VARCHAR(50),
    spec VARCHAR(30),
    dose_unit VARCHAR(10)
);

DELETE FROM dim_drug WHERE tenant = :tenant;

INSERT INTO dim_drug
SELECT tenant, MIN(business_date), drug_code_local, drug_code,
       MAX(drug_name), MAX(spec), MAX(dose_unit)
FROM std_prescription_item
WHERE tenant = :tenant
GROUP BY tenant, drug_code_local, drug_code;
