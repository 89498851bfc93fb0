-- Family-doctor contracts per center and month (家庭医生签约):
-- contracted_residents   persons with a contract in force at month end (start <= end of month
--                        <= end_date, not terminated: status 3 解约);
-- chronic_coverage_rate  contracted chronic patients / chronic patients (registry of
--                        mart_chronic_monthly, either group) at month end;
-- contracted_visit_share valid visits by residents with a contract in force at this center on
--                        the visit day / all valid visits of the month.
-- Grain: tenant × month, for the months with visits. Cumulative: a change on day D re-loads
-- every month from D's month on.
CREATE TABLE IF NOT EXISTS mart_family_doctor_monthly (
    tenant VARCHAR(40) NOT NULL,
    period_start DATE NOT NULL,
    contracted_residents BIGINT NOT NULL,
    new_contracts BIGINT NOT NULL,
    chronic_patients BIGINT NOT NULL,
    contracted_chronic_patients BIGINT NOT NULL,
    chronic_coverage_rate DOUBLE PRECISION,
    visits BIGINT NOT NULL,
    contracted_visits BIGINT NOT NULL,
    contracted_visit_share DOUBLE PRECISION
);

DELETE FROM mart_family_doctor_monthly
WHERE tenant = :tenant
  AND period_start >= CAST(date_trunc('month', CAST(:date_from AS DATE)) AS DATE);

INSERT INTO mart_family_doctor_monthly
WITH bounds AS (
    SELECT tenant, month_start,
           CAST(month_start + INTERVAL '1 month' - INTERVAL '1 day' AS DATE) AS month_end
    FROM (SELECT DISTINCT tenant, CAST(date_trunc('month', period_start) AS DATE) AS month_start
          FROM fact_visit
          WHERE tenant = :tenant
            AND period_start >= CAST(date_trunc('month', CAST(:date_from AS DATE)) AS DATE)) m
),
contracts AS (
    SELECT tenant, person_key, period_start AS signed_day, start_date, end_date
    FROM fact_family_contract
    WHERE tenant = :tenant AND status_code <> '3'
),
chronic AS (
    SELECT tenant, person_key, MIN(first_day) AS first_day
    FROM (
        SELECT tenant, person_key, MIN(period_start) AS first_day FROM fact_diagnosis
        WHERE tenant = :tenant AND disease_group IS NOT NULL AND person_key IS NOT NULL
        GROUP BY tenant, person_key
        UNION ALL
        SELECT tenant, person_key, MIN(period_start) FROM fact_chronic_followup
        WHERE tenant = :tenant GROUP BY tenant, person_key
    ) c
    GROUP BY tenant, person_key
),
in_force AS (
    SELECT DISTINCT b.tenant, b.month_start, c.person_key
    FROM bounds b
    JOIN contracts c
      ON c.tenant = b.tenant AND c.start_date <= b.month_end AND c.end_date >= b.month_end
),
signed AS (
    SELECT b.tenant, b.month_start, COUNT(c.person_key) AS new_contracts
    FROM bounds b
    JOIN fact_family_contract c ON c.tenant = b.tenant
         AND c.period_start BETWEEN b.month_start AND b.month_end
    WHERE c.tenant = :tenant
    GROUP BY b.tenant, b.month_start
),
chronic_m AS (
    SELECT b.tenant, b.month_start, COUNT(*) AS chronic_patients,
           COUNT(f.person_key) AS contracted_chronic_patients
    FROM bounds b
    JOIN chronic h ON h.tenant = b.tenant AND h.first_day <= b.month_end
    LEFT JOIN in_force f
      ON f.tenant = b.tenant AND f.month_start = b.month_start AND f.person_key = h.person_key
    GROUP BY b.tenant, b.month_start
),
-- the months' valid visits, read once for both counts below (the EXISTS alone had DuckDB
-- mark every visit of the warehouse, unpruned by center, before filtering)
visits AS (
    SELECT tenant, source_key, person_key, period_start,
           CAST(date_trunc('month', period_start) AS DATE) AS month_start
    FROM fact_visit
    WHERE tenant = :tenant AND is_valid
      AND period_start >= CAST(date_trunc('month', CAST(:date_from AS DATE)) AS DATE)
),
-- the valid visits by a resident with a contract in force on the visit day: one hash join on
-- tenant and person, the day range as its filter, and each visit counted once (a resident
-- may hold overlapping contracts). As an EXISTS, DuckDB de-correlated it into a distinct of
-- every (center, person, day), a join, a second distinct and a mark join back to the visits
-- (about half the mart's time); inside the aggregate's FILTER it is a correlated subplan per
-- visit on PostgreSQL
contracted_v AS (
    SELECT v.tenant, v.month_start, COUNT(DISTINCT v.source_key) AS contracted_visits
    FROM visits v
    JOIN contracts c ON c.tenant = v.tenant AND c.person_key = v.person_key
     AND v.period_start BETWEEN c.start_date AND c.end_date
    GROUP BY v.tenant, v.month_start
),
visits_m AS (
    SELECT tenant, month_start, COUNT(*) AS visits
    FROM visits
    GROUP BY tenant, month_start
),
residents AS (
    SELECT tenant, month_start, COUNT(*) AS contracted_residents
    FROM in_force
    GROUP BY tenant, month_start
)
SELECT b.tenant, b.month_start,
       COALESCE(r.contracted_residents, 0), COALESCE(s.new_contracts, 0),
       COALESCE(h.chronic_patients, 0), COALESCE(h.contracted_chronic_patients, 0),
       CAST(h.contracted_chronic_patients AS DOUBLE PRECISION) / NULLIF(h.chronic_patients, 0),
       COALESCE(v.visits, 0), COALESCE(cv.contracted_visits, 0),
       CAST(COALESCE(cv.contracted_visits, 0) AS DOUBLE PRECISION) / NULLIF(v.visits, 0)
FROM bounds b
LEFT JOIN residents r ON r.tenant = b.tenant AND r.month_start = b.month_start
LEFT JOIN signed s ON s.tenant = b.tenant AND s.month_start = b.month_start
LEFT JOIN chronic_m h ON h.tenant = b.tenant AND h.month_start = b.month_start
LEFT JOIN visits_m v ON v.tenant = b.tenant AND v.month_start = b.month_start
LEFT JOIN contracted_v cv ON cv.tenant = b.tenant AND cv.month_start = b.month_start;
