-- Data-quality scorecard per center, business day and dataset (from std_* and quarantine):
-- rows_in = standardized + quarantined (duplicates are counted per load in mart_dq_load_daily);
-- q_<kind> = quarantined rows with at least one reason of that kind (a row can have several);
-- timeliness: arrival delay = source arrival (ODS updated_at) - business time; late_rows are
-- rows that arrived on a later day than their business day (offline backlog, late entry).
-- Quarantined rows are placed on the business day of their original business-time value
-- (quarantine.business_date); the arrival is the std row's source_updated_at (its ODS row's
-- updated_at when it was standardized): both kept by the warehouse so this mart reads only
-- its day range.
-- Grain: tenant × day × dataset. Range-loaded.
CREATE TABLE IF NOT EXISTS mart_dq_daily (
    tenant VARCHAR(40) NOT NULL,
    period_start DATE NOT NULL,
    dataset VARCHAR(60) NOT NULL,
    rows_in BIGINT NOT NULL,
    standardized BIGINT NOT NULL,
    quarantined BIGINT NOT NULL,
    q_unmapped BIGINT NOT NULL,
    q_invalid BIGINT NOT NULL,
    q_missing BIGINT NOT NULL,
    q_implausible BIGINT NOT NULL,
    q_inconsistent BIGINT NOT NULL,
    q_future BIGINT NOT NULL,
    q_orphan BIGINT NOT NULL,
    q_other BIGINT NOT NULL,
    standardized_rate DOUBLE PRECISION,
    late_rows BIGINT NOT NULL,
    avg_delay_hours DOUBLE PRECISION,
    max_delay_hours DOUBLE PRECISION
);

DELETE FROM mart_dq_daily
WHERE tenant = :tenant AND period_start BETWEEN :date_from AND :date_to;

INSERT INTO mart_dq_daily
WITH arrivals AS (
    SELECT 'person' AS dataset, s.tenant, s.business_date AS d, s.business_time AS bt, s.source_updated_at AS arrived
    FROM std_person s
    WHERE s.tenant = :tenant AND s.business_date BETWEEN :date_from AND :date_to
    UNION ALL
    SELECT 'outpatient_visit' AS dataset, s.tenant, s.business_date AS d, s.business_time AS bt, s.source_updated_at AS arrived
    FROM std_outpatient_visit s
    WHERE s.tenant = :tenant AND s.business_date BETWEEN :date_from AND :date_to
    UNION ALL
    SELECT 'diagnosis' AS dataset, s.tenant, s.business_date AS d, s.business_time AS bt, s.source_updated_at AS arrived
    FROM std_diagnosis s
    WHERE s.tenant = :tenant AND s.business_date BETWEEN :date_from AND :date_to
    UNION ALL
    SELECT 'prescription' AS dataset, s.tenant, s.business_date AS d, s.business_time AS bt, s.source_updated_at AS arrived
    FROM std_prescription s
    WHERE s.tenant = :tenant AND s.business_date BETWEEN :date_from AND :date_to
    UNION ALL
    SELECT 'prescription_item' AS dataset, s.tenant, s.business_date AS d, s.business_time AS bt, s.source_updated_at AS arrived
    FROM std_prescription_item s
    WHERE s.tenant = :tenant AND s.business_date BETWEEN :date_from AND :date_to
    UNION ALL
    SELECT 'charge' AS dataset, s.tenant, s.business_date AS d, s.business_time AS bt, s.source_updated_at AS arrived
    FROM std_charge s
    WHERE s.tenant = :tenant AND s.business_date BETWEEN :date_from AND :date_to
    UNION ALL
    SELECT 'dispense' AS dataset, s.tenant, s.business_date AS d, s.business_time AS bt, s.source_updated_at AS arrived
    FROM std_dispense s
    WHERE s.tenant = :tenant AND s.business_date BETWEEN :date_from AND :date_to
    UNION ALL
    SELECT 'chronic_followup' AS dataset, s.tenant, s.business_date AS d, s.business_time AS bt, s.source_updated_at AS arrived
    FROM std_chronic_followup s
    WHERE s.tenant = :tenant AND s.business_date BETWEEN :date_from AND :date_to
    UNION ALL
    SELECT 'family_contract' AS dataset, s.tenant, s.business_date AS d, s.business_time AS bt, s.source_updated_at AS arrived
    FROM std_family_contract s
    WHERE s.tenant = :tenant AND s.business_date BETWEEN :date_from AND :date_to
),
std_day AS (
    SELECT tenant, dataset, d, COUNT(*) AS standardized,
           COUNT(*) FILTER (WHERE CAST(arrived AS DATE) > d) AS late_rows,
           -- the mean from the exact sum of the delays (NUMERIC seconds): an AVG of floats
           -- depends in its last bits on the aggregation order, which differs between a
           -- one-tenant and a many-tenant load
           CAST(SUM(CAST(EXTRACT(EPOCH FROM (arrived - bt)) AS NUMERIC(18, 6)))
                AS DOUBLE PRECISION) / NULLIF(COUNT(arrived - bt), 0) / 3600.0
               AS avg_delay_hours,
           MAX(EXTRACT(EPOCH FROM (arrived - bt)) / 3600.0) AS max_delay_hours
    FROM arrivals
    GROUP BY tenant, dataset, d
),
q AS (
    SELECT tenant, dataset, reasons, business_date AS d
    FROM quarantine
    WHERE tenant = :tenant AND business_date BETWEEN :date_from AND :date_to
),
q_day AS (
    SELECT tenant, dataset, d, COUNT(*) AS quarantined,
           COUNT(*) FILTER (WHERE reasons LIKE '%"unmapped:%') AS q_unmapped,
           COUNT(*) FILTER (WHERE reasons LIKE '%"invalid:%') AS q_invalid,
           COUNT(*) FILTER (WHERE reasons LIKE '%"missing:%') AS q_missing,
           COUNT(*) FILTER (WHERE reasons LIKE '%"implausible:%') AS q_implausible,
           COUNT(*) FILTER (WHERE reasons LIKE '%"inconsistent:%') AS q_inconsistent,
           COUNT(*) FILTER (WHERE reasons LIKE '%"future:%') AS q_future,
           COUNT(*) FILTER (WHERE reasons LIKE '%"orphan:%') AS q_orphan,
           COUNT(*) FILTER (WHERE reasons NOT LIKE '%"unmapped:%' AND reasons NOT LIKE '%"invalid:%' AND reasons NOT LIKE '%"missing:%' AND reasons NOT LIKE '%"implausible:%' AND reasons NOT LIKE '%"inconsistent:%' AND reasons NOT LIKE '%"future:%' AND reasons NOT LIKE '%"orphan:%') AS q_other
    FROM q
    GROUP BY tenant, dataset, d
),
days AS (
    SELECT tenant, dataset, d, standardized, late_rows, avg_delay_hours, max_delay_hours,
           0 AS quarantined, 0 AS q_unmapped, 0 AS q_invalid, 0 AS q_missing, 0 AS q_implausible, 0 AS q_inconsistent, 0 AS q_future, 0 AS q_orphan, 0 AS q_other
    FROM std_day
    UNION ALL
    SELECT tenant, dataset, d, 0, 0, NULL, NULL, quarantined, q_unmapped, q_invalid, q_missing, q_implausible, q_inconsistent, q_future, q_orphan, q_other
    FROM q_day
)
SELECT tenant, d, dataset, SUM(standardized) + SUM(quarantined), SUM(standardized),
       SUM(quarantined), SUM(q_unmapped), SUM(q_invalid), SUM(q_missing), SUM(q_implausible), SUM(q_inconsistent), SUM(q_future), SUM(q_orphan), SUM(q_other),
       CAST(SUM(standardized) AS DOUBLE PRECISION) / NULLIF(SUM(standardized) + SUM(quarantined), 0),
       SUM(late_rows), MAX(avg_delay_hours), MAX(max_delay_hours)
FROM days
GROUP BY tenant, d, dataset;
