-- Data-quality scorecard per center and business day in the Kahn categories (Kahn et al.,
-- "A harmonized data quality assessment terminology", eGEMs 2016), over all datasets:
--   conformance   = share of rows without an unmapped or invalid value (codes, formats);
--   completeness  = share of rows without a missing required element;
--   plausibility  = share of rows without an implausible, inconsistent or future value;
--   timeliness    = share of rows that arrived on their business day, and the mean delay;
--   consistency   = cross-dataset reconciliation of the day's standardized rows:
--                   prescriptions whose visit is unknown, prescriptions without any charge,
--                   and dispensed prescriptions that were never prescribed.
-- Rates are NULL for a day without rows. Grain: tenant × day. Source: mart_dq_daily + std_*.
CREATE TABLE IF NOT EXISTS mart_data_quality (
    tenant VARCHAR(40) NOT NULL,
    period_start DATE NOT NULL,
    rows_in BIGINT NOT NULL,
    quarantined BIGINT NOT NULL,
    conformance DOUBLE PRECISION,
    completeness DOUBLE PRECISION,
    plausibility DOUBLE PRECISION,
    timeliness DOUBLE PRECISION,
    avg_delay_hours DOUBLE PRECISION,
    rx_without_visit BIGINT NOT NULL,
    rx_without_charge BIGINT NOT NULL,
    dispense_without_rx BIGINT NOT NULL
);

DELETE FROM mart_data_quality
WHERE tenant = :tenant AND period_start BETWEEN :date_from AND :date_to;

INSERT INTO mart_data_quality
WITH dq AS (
    SELECT tenant, period_start,
           SUM(rows_in) AS rows_in, SUM(quarantined) AS quarantined,
           SUM(q_unmapped + q_invalid) AS nonconformant,
           SUM(q_missing) AS incomplete,
           SUM(q_implausible + q_inconsistent + q_future) AS implausible,
           SUM(late_rows) AS late_rows,
           SUM(standardized) AS standardized,
           SUM(avg_delay_hours * standardized) AS delay_weighted
    FROM mart_dq_daily
    WHERE tenant = :tenant AND period_start BETWEEN :date_from AND :date_to
    GROUP BY tenant, period_start
),
rx AS (
    SELECT p.tenant, p.business_date AS d,
           SUM(CASE WHEN v.source_key IS NULL THEN 1 ELSE 0 END) AS rx_without_visit,
           SUM(CASE WHEN c.rx_source_key IS NULL THEN 1 ELSE 0 END) AS rx_without_charge
    FROM std_prescription p
    LEFT JOIN std_outpatient_visit v
      ON v.tenant = p.tenant AND v.source_key = p.visit_source_key
    -- the charged prescriptions as a set (a hash join): a correlated NOT EXISTS per
    -- prescription was a nested loop over std_charge on PostgreSQL (minutes per center),
    -- only the charges of the range's prescriptions (a semi join): the distinct over every
    -- charge of the centers was most of this mart's time
    LEFT JOIN (SELECT DISTINCT tenant, rx_source_key FROM std_charge
               WHERE tenant = :tenant AND rx_source_key IS NOT NULL
                 AND (tenant, rx_source_key) IN (
                     SELECT tenant, source_key FROM std_prescription
                     WHERE tenant = :tenant
                       AND business_date BETWEEN :date_from AND :date_to)) c
      ON c.tenant = p.tenant AND c.rx_source_key = p.source_key
    WHERE p.tenant = :tenant AND p.business_date BETWEEN :date_from AND :date_to
    GROUP BY p.tenant, p.business_date
),
disp AS (
    SELECT d.tenant, d.business_date AS d,
           SUM(CASE WHEN p.source_key IS NULL THEN 1 ELSE 0 END) AS dispense_without_rx
    FROM std_dispense d
    LEFT JOIN std_prescription p ON p.tenant = d.tenant AND p.source_key = d.rx_source_key
    WHERE d.tenant = :tenant AND d.business_date BETWEEN :date_from AND :date_to
    GROUP BY d.tenant, d.business_date
)
SELECT
    dq.tenant,
    dq.period_start,
    dq.rows_in,
    dq.quarantined,
    CASE WHEN dq.rows_in > 0 THEN 1.0 - dq.nonconformant * 1.0 / dq.rows_in END,
    CASE WHEN dq.rows_in > 0 THEN 1.0 - dq.incomplete * 1.0 / dq.rows_in END,
    CASE WHEN dq.rows_in > 0 THEN 1.0 - dq.implausible * 1.0 / dq.rows_in END,
    CASE WHEN dq.standardized > 0 THEN 1.0 - dq.late_rows * 1.0 / dq.standardized END,
    -- rounded: a float sum's last bits depend on aggregation order; re-loads stay identical
    CASE WHEN dq.standardized > 0 THEN ROUND(CAST(dq.delay_weighted / dq.standardized
                                                  AS NUMERIC(18, 6)), 4) END,
    COALESCE(rx.rx_without_visit, 0),
    COALESCE(rx.rx_without_charge, 0),
    COALESCE(disp.dispense_without_rx, 0)
FROM dq
LEFT JOIN rx ON rx.tenant = dq.tenant AND rx.d = dq.period_start
LEFT JOIN disp ON disp.tenant = dq.tenant AND disp.d = dq.period_start;
