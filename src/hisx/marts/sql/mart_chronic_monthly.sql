-- Hypertension and diabetes management per center and month (国家基本公共卫生服务 慢病管理):
-- managed_patients  persons in the center's registry by month end (a diagnosis of the group at
--                   a visit, or a follow-up of the group, on or before the month end);
-- followup_rate     persons followed up in the month / managed_patients;
-- control_rate      persons whose last follow-up in the month was controlled (HTN: BP < 140/90,
--                   DM: fasting glucose < 7.0 mmol/L) / persons whose last follow-up was measured.
-- Grain: tenant × month × disease_group, for the months with visits or follow-ups.
-- Cumulative: a change on day D re-loads every month from D's month on.
CREATE TABLE IF NOT EXISTS mart_chronic_monthly (
    tenant VARCHAR(40) NOT NULL,
    period_start DATE NOT NULL,
    disease_group VARCHAR(3) NOT NULL,
    managed_patients BIGINT NOT NULL,
    new_patients BIGINT NOT NULL,
    followed_up_patients BIGINT NOT NULL,
    followups BIGINT NOT NULL,
    followup_rate DOUBLE PRECISION,
    measured_patients BIGINT NOT NULL,
    controlled_patients BIGINT NOT NULL,
    control_rate DOUBLE PRECISION
);

DELETE FROM mart_chronic_monthly
WHERE tenant = :tenant
  AND period_start >= CAST(date_trunc('month', CAST(:date_from AS DATE)) AS DATE);

INSERT INTO mart_chronic_monthly
WITH months AS (
    SELECT DISTINCT tenant, CAST(date_trunc('month', period_start) AS DATE) AS month_start
    FROM fact_visit
    WHERE tenant = :tenant
      AND period_start >= CAST(date_trunc('month', CAST(:date_from AS DATE)) AS DATE)
    UNION
    SELECT DISTINCT tenant, CAST(date_trunc('month', period_start) AS DATE)
    FROM fact_chronic_followup
    WHERE tenant = :tenant
      AND period_start >= CAST(date_trunc('month', CAST(:date_from AS DATE)) AS DATE)
),
bounds AS (
    SELECT tenant, month_start,
           CAST(month_start + INTERVAL '1 month' AS DATE) AS next_month
    FROM months
),
groups AS (
    SELECT 'HTN' AS disease_group UNION ALL SELECT 'DM'
),
registry AS (
    SELECT tenant, disease_group, person_key, MIN(first_day) AS first_day
    FROM (
        SELECT tenant, disease_group, person_key, MIN(period_start) AS first_day
        FROM fact_diagnosis
        WHERE tenant = :tenant AND disease_group IS NOT NULL AND person_key IS NOT NULL
        GROUP BY tenant, disease_group, person_key
        UNION ALL
        SELECT tenant, disease_group, person_key, MIN(period_start)
        FROM fact_chronic_followup
        WHERE tenant = :tenant
        GROUP BY tenant, disease_group, person_key
    ) r
    GROUP BY tenant, disease_group, person_key
),
managed AS (
    SELECT b.tenant, b.month_start, r.disease_group,
           COUNT(*) AS managed_patients,
           COUNT(*) FILTER (WHERE r.first_day >= b.month_start) AS new_patients
    FROM bounds b
    JOIN registry r ON r.tenant = b.tenant AND r.first_day < b.next_month
    GROUP BY b.tenant, b.month_start, r.disease_group
),
last_fu AS (
    SELECT tenant, CAST(date_trunc('month', period_start) AS DATE) AS month_start,
           disease_group, person_key, is_controlled,
           ROW_NUMBER() OVER (PARTITION BY tenant,
                                           CAST(date_trunc('month', period_start) AS DATE),
                                           disease_group, person_key
                              ORDER BY business_time DESC, source_key DESC) AS rn
    FROM fact_chronic_followup
    WHERE tenant = :tenant
      AND period_start >= CAST(date_trunc('month', CAST(:date_from AS DATE)) AS DATE)
),
fu AS (
    SELECT tenant, month_start, disease_group,
           COUNT(*) FILTER (WHERE rn = 1) AS followed_up_patients,
           COUNT(*) AS followups,
           COUNT(*) FILTER (WHERE rn = 1 AND is_controlled IS NOT NULL) AS measured_patients,
           COUNT(*) FILTER (WHERE rn = 1 AND is_controlled) AS controlled_patients
    FROM last_fu
    GROUP BY tenant, month_start, disease_group
)
SELECT b.tenant, b.month_start, g.disease_group,
       COALESCE(m.managed_patients, 0), COALESCE(m.new_patients, 0),
       COALESCE(f.followed_up_patients, 0), COALESCE(f.followups, 0),
       CAST(COALESCE(f.followed_up_patients, 0) AS DOUBLE PRECISION)
           / NULLIF(m.managed_patients, 0),
       COALESCE(f.measured_patients, 0), COALESCE(f.controlled_patients, 0),
       CAST(f.controlled_patients AS DOUBLE PRECISION) / NULLIF(f.measured_patients, 0)
FROM bounds b
CROSS JOIN groups g
LEFT JOIN managed m
  ON m.tenant = b.tenant AND m.month_start = b.month_start AND m.disease_group = g.disease_group
LEFT JOIN fu f
  ON f.tenant = b.tenant AND f.month_start = b.month_start AND f.disease_group = g.disease_group;
