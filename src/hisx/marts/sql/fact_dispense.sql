-- Fact: dispensing (发药 / 退药), with the prescription's day by reference.
-- Grain: tenant × dispense (source_key). Range-loaded on the dispense business day.
CREATE TABLE IF NOT EXISTS fact_dispense (
    tenant VARCHAR(40) NOT NULL,
    period_start DATE NOT NULL,
    source_key BIGINT NOT NULL,
    rx_source_key BIGINT NOT NULL,
    rx_date DATE,
    pharmacist_code VARCHAR(20) NOT NULL,
    status_code VARCHAR(1) NOT NULL,
    minutes_after_rx DOUBLE PRECISION
);

DELETE FROM fact_dispense
WHERE tenant = :tenant AND period_start BETWEEN :date_from AND :date_to;

INSERT INTO fact_dispense
SELECT d.tenant, d.business_date, d.source_key, d.rx_source_key, r.business_date,
       d.pharmacist_code, d.status_code,
       EXTRACT(EPOCH FROM (d.business_time - r.business_time)) / 60.0
FROM std_dispense d
LEFT JOIN std_prescription r ON r.tenant = d.tenant AND r.source_key = d.rx_source_key
WHERE d.tenant = :tenant AND d.business_date BETWEEN :date_from AND :date_to;
