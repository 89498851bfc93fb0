-- Fact: outpatient / emergency visits (registrations). is_valid = a real visit (normal status,
-- not soft-deleted); cancelled registrations (退号) stay with is_valid = false.
-- Grain: tenant × visit (source_key). Range-loaded on the visit's business day.
CREATE TABLE IF NOT EXISTS fact_visit (
    tenant VARCHAR(40) NOT NULL,
    period_start DATE NOT NULL,
    source_key BIGINT NOT NULL,
    visit_no VARCHAR(18) NOT NULL,
    business_time TIMESTAMP NOT NULL,
    person_key VARCHAR(64) NOT NULL,
    dept_code_local VARCHAR(20) NOT NULL,
    dept_code VARCHAR(5) NOT NULL,
    doctor_code VARCHAR(20) NOT NULL,
    first_visit_code VARCHAR(1) NOT NULL,
    visit_type_code VARCHAR(1) NOT NULL,
    status_code VARCHAR(1) NOT NULL,
    is_deleted BOOLEAN NOT NULL,
    is_valid BOOLEAN NOT NULL,
    reg_fee NUMERIC(14,2) NOT NULL
);

DELETE FROM fact_visit
WHERE tenant = :tenant AND period_start BETWEEN :date_from AND :date_to;

INSERT INTO fact_visit
SELECT tenant, business_date, source_key, visit_no, business_time, person_key, dept_code_local,
       dept_code, doctor_code, first_visit_code, visit_type_code, status_code, is_deleted,
       (status_code = '1' AND NOT is_deleted), reg_fee
FROM std_outpatient_visit
WHERE tenant = :tenant AND business_date BETWEEN :date_from AND :date_to;

-- Keyed load (marts/runner.py): the keys whose rows may differ from the mart's, i.e. the
-- rows of std_outpatient_visit written or quarantined by a load from :since on.
SELECT tenant, source_key FROM std_outpatient_visit WHERE tenant = :tenant AND load_id >= :since
UNION
SELECT tenant, source_key FROM quarantine
WHERE dataset = 'outpatient_visit' AND tenant = :tenant AND load_id >= :since;
