-- Fact: family-doctor contracts (家庭医生签约). Grain: tenant × contract (source_key).
-- Range-loaded on the signing day.
CREATE TABLE IF NOT EXISTS fact_family_contract (
    tenant VARCHAR(40) NOT NULL,
    period_start DATE NOT NULL,
    source_key BIGINT NOT NULL,
    contract_no VARCHAR(30) NOT NULL,
    person_key VARCHAR(64) NOT NULL,
    team_code VARCHAR(20) NOT NULL,
    doctor_code VARCHAR(20) NOT NULL,
    package_code VARCHAR(2) NOT NULL,
    start_date DATE NOT NULL,
    end_date DATE NOT NULL,
    status_code VARCHAR(1) NOT NULL
);

DELETE FROM fact_family_contract
WHERE tenant = :tenant AND period_start BETWEEN :date_from AND :date_to;

INSERT INTO fact_family_contract
SELECT tenant, business_date, source_key, contract_no, person_key, team_code, doctor_code,
       package_code, start_date, end_date, status_code
FROM std_family_contract
WHERE tenant = :tenant AND business_date BETWEEN :date_from AND :date_to;

-- Keyed load (marts/runner.py): the keys whose rows may differ from the mart's, i.e. the
-- rows of std_family_contract written or quarantined by a load from :since on.
SELECT tenant, source_key FROM std_family_contract WHERE tenant = :tenant AND load_id >= :since
UNION
SELECT tenant, source_key FROM quarantine
WHERE dataset = 'family_contract' AND tenant = :tenant AND load_id >= :since;
