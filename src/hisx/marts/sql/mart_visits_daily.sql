-- Outpatient visits per center and business day (the article's trend chart).
-- Cancelled registrations (退号, status_code 2) and soft-deleted rows are not visits; they
-- are counted separately as `cancelled`.
-- Grain: tenant × day. Source: std_outpatient_visit. Params: :tenant, :date_from, :date_to.
CREATE TABLE IF NOT EXISTS mart_visits_daily (
    tenant VARCHAR(40) NOT NULL,
    period_start DATE NOT NULL,
    visits BIGINT NOT NULL,
    first_visits BIGINT NOT NULL,
    return_visits BIGINT NOT NULL,
    outpatient BIGINT NOT NULL,
    emergency BIGINT NOT NULL,
    cancelled BIGINT NOT NULL
);

DELETE FROM mart_visits_daily
WHERE tenant = :tenant AND period_start BETWEEN :date_from AND :date_to;

INSERT INTO mart_visits_daily
SELECT
    tenant,
    business_date AS period_start,
    SUM(CASE WHEN status_code = '1' AND NOT is_deleted THEN 1 ELSE 0 END) AS visits,
    SUM(CASE WHEN status_code = '1' AND NOT is_deleted AND first_visit_code = '1' THEN 1 ELSE 0 END),
    SUM(CASE WHEN status_code = '1' AND NOT is_deleted AND first_visit_code = '2' THEN 1 ELSE 0 END),
    SUM(CASE WHEN status_code = '1' AND NOT is_deleted AND visit_type_code = '1' THEN 1 ELSE 0 END),
    SUM(CASE WHEN status_code = '1' AND NOT is_deleted AND visit_type_code = '2' THEN 1 ELSE 0 END),
    SUM(CASE WHEN status_code = '2' OR is_deleted THEN 1 ELSE 0 END) AS cancelled
FROM std_outpatient_visit
WHERE tenant = :tenant AND business_date BETWEEN :date_from AND :date_to
GROUP BY tenant, business_date;
