-- Diagnoses per center and month by ICD-10 3-character category, ranked for top-N questions
-- (diagnosis_rank: 1 = most frequent; ties broken by icd3).
-- Grain: tenant × month × icd3. Source: fact_diagnosis, ref_icd10_chapter.
CREATE TABLE IF NOT EXISTS mart_diagnosis_monthly (
    tenant VARCHAR(40) NOT NULL,
    period_start DATE NOT NULL,
    icd3 VARCHAR(3) NOT NULL,
    icd_chapter VARCHAR(5),
    disease_group VARCHAR(3),
    diagnoses BIGINT NOT NULL,
    primary_diagnoses BIGINT NOT NULL,
    visits BIGINT NOT NULL,
    diagnosis_rank BIGINT NOT NULL
);

DELETE FROM mart_diagnosis_monthly
WHERE tenant = :tenant
  AND period_start BETWEEN CAST(date_trunc('month', CAST(:date_from AS DATE)) AS DATE)
                       AND CAST(:date_to AS DATE);

INSERT INTO mart_diagnosis_monthly
SELECT s.tenant, s.month_start, s.icd3, c.chapter, s.disease_group, s.diagnoses,
       s.primary_diagnoses, s.visits,
       ROW_NUMBER() OVER (PARTITION BY s.tenant, s.month_start ORDER BY s.diagnoses DESC, s.icd3)
FROM (
    SELECT tenant, CAST(date_trunc('month', period_start) AS DATE) AS month_start, icd3,
           MAX(disease_group) AS disease_group, COUNT(*) AS diagnoses,
           COUNT(*) FILTER (WHERE is_primary) AS primary_diagnoses,
           COUNT(DISTINCT visit_source_key) AS visits
    FROM fact_diagnosis
    WHERE tenant = :tenant
      AND period_start >= CAST(date_trunc('month', CAST(:date_from AS DATE)) AS DATE)
      AND period_start < CAST(date_trunc('month', CAST(:date_to AS DATE))
                              + INTERVAL '1 month' AS DATE)
    GROUP BY tenant, CAST(date_trunc('month', period_start) AS DATE), icd3
) s
LEFT JOIN ref_icd10_chapter c ON s.icd3 BETWEEN c.code_from AND c.code_to;
