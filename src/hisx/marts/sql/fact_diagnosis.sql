-- Fact: outpatient diagnoses, with the visit's pseudonymous person key (looked up by reference;
-- NULL when the visit itself was quarantined).
-- Grain: tenant × diagnosis (source_key). Range-loaded on the diagnosis business day.
CREATE TABLE IF NOT EXISTS fact_diagnosis (
    tenant VARCHAR(40) NOT NULL,
    period_start DATE NOT NULL,
    source_key BIGINT NOT NULL,
    visit_source_key BIGINT NOT NULL,
    person_key VARCHAR(64),
    seq_no BIGINT NOT NULL,
    icd_code VARCHAR(20) NOT NULL,
    icd3 VARCHAR(3) NOT NULL,
    is_primary BOOLEAN NOT NULL,
    disease_group VARCHAR(3)
);

DELETE FROM fact_diagnosis
WHERE tenant = :tenant AND period_start BETWEEN :date_from AND :date_to;

INSERT INTO fact_diagnosis
SELECT d.tenant, d.business_date, d.source_key, d.visit_source_key, v.person_key, d.seq_no,
       d.icd_code, SUBSTR(d.icd_code, 1, 3), d.is_primary, d.disease_group
FROM std_diagnosis d
LEFT JOIN std_outpatient_visit v ON v.tenant = d.tenant AND v.source_key = d.visit_source_key
WHERE d.tenant = :tenant AND d.business_date BETWEEN :date_from AND :date_to;

-- Keyed load (marts/runner.py): the keys whose rows may differ from the mart's, i.e. the
-- rows of std_diagnosis written or quarantined by a load from :since on, and the
-- diagnoses of a changed or quarantined visit (person_key).
SELECT tenant, source_key FROM std_diagnosis WHERE tenant = :tenant AND load_id >= :since
UNION
SELECT tenant, source_key FROM quarantine
WHERE dataset = 'diagnosis' AND tenant = :tenant AND load_id >= :since
UNION
-- diagnoses of a changed or quarantined visit (person_key)
SELECT d.tenant, d.source_key FROM std_diagnosis d
JOIN (SELECT tenant, source_key FROM std_outpatient_visit WHERE tenant = :tenant AND load_id >= :since
      UNION ALL
      SELECT tenant, source_key FROM quarantine
      WHERE dataset = 'outpatient_visit' AND tenant = :tenant AND load_id >= :since) p
  ON p.tenant = d.tenant AND p.source_key = d.visit_source_key
WHERE d.tenant = :tenant;
