-- Data-quality per center, load day and dataset, from the standardization run log (std_log):
-- conservation of every batch (rows_in = standardized + quarantined + deduplicated).
-- Grain: tenant × load day (period_start = day the batches were standardized) × dataset.
-- Full refresh per tenant (std_log is small and append-only).
CREATE TABLE IF NOT EXISTS mart_dq_load_daily (
    tenant VARCHAR(40) NOT NULL,
    period_start DATE NOT NULL,
    dataset VARCHAR(60) NOT NULL,
    batches BIGINT NOT NULL,
    rows_in BIGINT NOT NULL,
    standardized BIGINT NOT NULL,
    quarantined BIGINT NOT NULL,
    deduplicated BIGINT NOT NULL,
    conserved BOOLEAN NOT NULL
);

DELETE FROM mart_dq_load_daily WHERE tenant = :tenant;

INSERT INTO mart_dq_load_daily
SELECT tenant, CAST(logged_at AS DATE), dataset, COUNT(*), SUM(rows_in), SUM(standardized),
       SUM(quarantined), SUM(deduplicated),
       SUM(rows_in) = SUM(standardized) + SUM(quarantined) + SUM(deduplicated)
FROM std_log
WHERE tenant = :tenant
GROUP BY tenant, CAST(logged_at AS DATE), dataset;
