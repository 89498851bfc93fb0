-- Outpatient visits per center and month, rolled up from mart_visits_daily.
-- A dirty day range re-loads the whole months it touches.
-- Grain: tenant × month (period_start = first day). Params: :tenant, :date_from, :date_to.
CREATE TABLE IF NOT EXISTS mart_visits_monthly (
    tenant VARCHAR(40) NOT NULL,
    period_start DATE NOT NULL,
    visits BIGINT NOT NULL,
    first_visits BIGINT NOT NULL,
    return_visits BIGINT NOT NULL,
    outpatient BIGINT NOT NULL,
    emergency BIGINT NOT NULL,
    cancelled BIGINT NOT NULL
);

DELETE FROM mart_visits_monthly
WHERE tenant = :tenant
  AND period_start BETWEEN CAST(date_trunc('month', CAST(:date_from AS DATE)) AS DATE)
                       AND CAST(:date_to AS DATE);

INSERT INTO mart_visits_monthly
SELECT
    tenant,
    CAST(date_trunc('month', period_start) AS DATE) AS period_start,
    SUM(visits), SUM(first_visits), SUM(return_visits),
    SUM(outpatient), SUM(emergency), SUM(cancelled)
FROM mart_visits_daily
WHERE tenant = :tenant
  AND period_start >= CAST(date_trunc('month', CAST(:date_from AS DATE)) AS DATE)
  AND period_start < CAST(date_trunc('month', CAST(:date_to AS DATE)) + INTERVAL '1 month' AS DATE)
GROUP BY tenant, CAST(date_trunc('month', period_start) AS DATE);
