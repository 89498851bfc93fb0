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

-- Keyed load (marts/runner.py): the keys whose rows may differ from the mart's, i.e. the
-- rows of std_dispense written or quarantined by a load from :since on, and the
-- dispenses of a changed or quarantined prescription.
SELECT tenant, source_key FROM std_dispense WHERE tenant = :tenant AND load_id >= :since
UNION
SELECT tenant, source_key FROM quarantine
WHERE dataset = 'dispense' AND tenant = :tenant AND load_id >= :since
UNION
-- dispenses of a changed or quarantined prescription
SELECT d.tenant, d.source_key FROM std_dispense d
JOIN (SELECT tenant, source_key FROM std_prescription WHERE tenant = :tenant AND load_id >= :since
      UNION ALL
      SELECT tenant, source_key FROM quarantine
      WHERE dataset = 'prescription' AND tenant = :tenant AND load_id >= :since) p
  ON p.tenant = d.tenant AND p.source_key = d.rx_source_key
WHERE d.tenant = :tenant;
