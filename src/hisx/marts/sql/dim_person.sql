-- Dimension: persons, pseudonymous key only (HMAC-SHA256) plus coarse attributes.
-- No name, ID number, phone, birth date or address: birth year and the 6-digit division only.
-- Grain: tenant × person_key (a person registered twice keeps the earliest record's values).
-- Incremental by key: re-loads the persons with a record on a day of the range (new and
-- changed records) and the keys whose records were replaced or removed since the last load
-- (mart_dirty_keys: a corrected ID number moves a record to another key), so an hour's
-- registrations cost their own persons, not the center's population.
CREATE TABLE IF NOT EXISTS dim_person (
    tenant VARCHAR(40) NOT NULL,
    period_start DATE,
    person_key VARCHAR(64) NOT NULL,
    key_id VARCHAR(32),
    person_key_strength VARCHAR(8),
    gender_code VARCHAR(1),
    birth_year INTEGER,
    insurance_type_code VARCHAR(2),
    division_code VARCHAR(6),
    records BIGINT NOT NULL
);

DELETE FROM dim_person
WHERE tenant = :tenant
  AND person_key IN (
      SELECT person_key FROM std_person
      WHERE tenant = :tenant AND business_date BETWEEN :date_from AND :date_to
      UNION
      SELECT dim_key FROM mart_dirty_keys WHERE tenant = :tenant AND dataset = 'person');

INSERT INTO dim_person
SELECT tenant, business_date, person_key, key_id, person_key_strength, gender_code,
       birth_year, insurance_type_code, division_code, records
FROM (
    SELECT p.tenant, p.business_date, p.person_key, p.key_id, p.person_key_strength,
           p.gender_code, CAST(EXTRACT(YEAR FROM p.birth_date) AS INTEGER) AS birth_year,
           p.insurance_type_code, p.division_code,
           COUNT(*) OVER (PARTITION BY p.tenant, p.person_key) AS records,
           ROW_NUMBER() OVER (PARTITION BY p.tenant, p.person_key
                              ORDER BY p.business_time, p.source_key) AS rn
    FROM std_person p
    WHERE p.tenant = :tenant AND NOT p.is_deleted
      AND p.person_key IN (
          SELECT person_key FROM std_person
          WHERE tenant = :tenant AND business_date BETWEEN :date_from AND :date_to
          UNION
          SELECT dim_key FROM mart_dirty_keys WHERE tenant = :tenant AND dataset = 'person')
) s
WHERE rn = 1;
