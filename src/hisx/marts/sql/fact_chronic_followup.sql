-- Fact: hypertension / diabetes follow-ups (WS 372). is_controlled: HTN sbp < 140 and
-- dbp < 90; DM fasting glucose < 7.0 mmol/L; NULL when the measure was not taken.
-- Grain: tenant × follow-up (source_key). Range-loaded on the follow-up business day.
CREATE TABLE IF NOT EXISTS fact_chronic_followup (
    tenant VARCHAR(40) NOT NULL,
    period_start DATE NOT NULL,
    source_key BIGINT NOT NULL,
    business_time TIMESTAMP NOT NULL,
    person_key VARCHAR(64) NOT NULL,
    disease_group VARCHAR(3) NOT NULL,
    method_code VARCHAR(1),
    sbp BIGINT,
    dbp BIGINT,
    fasting_glucose DOUBLE PRECISION,
    adherence_code VARCHAR(1),
    doctor_code VARCHAR(20) NOT NULL,
    is_controlled BOOLEAN
);

DELETE FROM fact_chronic_followup
WHERE tenant = :tenant AND period_start BETWEEN :date_from AND :date_to;

INSERT INTO fact_chronic_followup
SELECT tenant, business_date, source_key, business_time, person_key, disease_group, method_code,
       sbp, dbp, fasting_glucose, adherence_code, doctor_code,
       CASE
           WHEN disease_group = 'HTN' AND sbp IS NOT NULL AND dbp IS NOT NULL
               THEN sbp < 140 AND dbp < 90
           WHEN disease_group = 'DM' AND fasting_glucose IS NOT NULL
               THEN fasting_glucose < 7.0
       END
FROM std_chronic_followup
WHERE tenant = :tenant AND business_date BETWEEN :date_from AND :date_to;

-- Keyed load (marts/runner.py): the keys whose rows may differ from the mart's, i.e. the
-- rows of std_chronic_followup written or quarantined by a load from :since on.
SELECT tenant, source_key FROM std_chronic_followup WHERE tenant = :tenant AND load_id >= :since
UNION
SELECT tenant, source_key FROM quarantine
WHERE dataset = 'chronic_followup' AND tenant = :tenant AND load_id >= :since;
