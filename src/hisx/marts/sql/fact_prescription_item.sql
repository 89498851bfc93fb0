-- Fact: prescription lines (drug use), with the prescription's type and doctor by reference.
-- Grain: tenant × prescription line (source_key). Range-loaded on the prescription day.
CREATE TABLE IF NOT EXISTS fact_prescription_item (
    tenant VARCHAR(40) NOT NULL,
    period_start DATE NOT NULL,
    source_key BIGINT NOT NULL,
    rx_source_key BIGINT NOT NULL,
    line_no BIGINT NOT NULL,
    rx_type_code VARCHAR(1),
    doctor_code VARCHAR(20),
    drug_code_local VARCHAR(30) NOT NULL,
    drug_code VARCHAR(23) NOT NULL,
    route_code VARCHAR(3),
    frequency_code VARCHAR(2),
    days BIGINT,
    quantity DOUBLE PRECISION NOT NULL,
    unit_price NUMERIC(14,2) NOT NULL,
    amount NUMERIC(14,2) NOT NULL
);

DELETE FROM fact_prescription_item
WHERE tenant = :tenant AND period_start BETWEEN :date_from AND :date_to;

INSERT INTO fact_prescription_item
SELECT i.tenant, i.business_date, i.source_key, i.rx_source_key, i.line_no, r.rx_type_code,
       r.doctor_code, i.drug_code_local, i.drug_code, i.route_code, i.frequency_code, i.days,
       i.quantity, i.unit_price, i.amount
FROM std_prescription_item i
LEFT JOIN std_prescription r ON r.tenant = i.tenant AND r.source_key = i.rx_source_key
WHERE i.tenant = :tenant AND i.business_date BETWEEN :date_from AND :date_to;

-- Keyed load (marts/runner.py): the keys whose rows may differ from the mart's, i.e. the
-- rows of std_prescription_item written or quarantined by a load from :since on, and the
-- items of a changed or quarantined prescription.
SELECT tenant, source_key FROM std_prescription_item WHERE tenant = :tenant AND load_id >= :since
UNION
SELECT tenant, source_key FROM quarantine
WHERE dataset = 'prescription_item' AND tenant = :tenant AND load_id >= :since
UNION
-- items of a changed or quarantined prescription
SELECT i.tenant, i.source_key FROM std_prescription_item i
JOIN (SELECT tenant, source_key FROM std_prescription WHERE tenant = :tenant AND load_id >= :since
      UNION ALL
      SELECT tenant, source_key FROM quarantine
      WHERE dataset = 'prescription' AND tenant = :tenant AND load_id >= :since) p
  ON p.tenant = i.tenant AND p.source_key = i.rx_source_key
WHERE i.tenant = :tenant;
