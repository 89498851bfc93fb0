-- Fact: charges. A refund is its own negative row on the day it happened (cash basis), linked
-- to the charge it refunds by reference: refund_of_source_key, with the original's business day
-- and whether the original was found. Netting is then sum(amount) over any grouping.
-- pay_class: 'self' (全自费 07), else 'insurance'.
-- Grain: tenant × charge row (source_key). Range-loaded on the charge business day.
CREATE TABLE IF NOT EXISTS fact_charge (
    tenant VARCHAR(40) NOT NULL,
    period_start DATE NOT NULL,
    source_key BIGINT NOT NULL,
    charge_no VARCHAR(30) NOT NULL,
    visit_source_key BIGINT NOT NULL,
    rx_source_key BIGINT,
    fee_category_code VARCHAR(2) NOT NULL,
    pay_method_code VARCHAR(2) NOT NULL,
    pay_class VARCHAR(10) NOT NULL,
    amount NUMERIC(14,2) NOT NULL,
    insurance_amount NUMERIC(14,2) NOT NULL,
    self_amount NUMERIC(14,2) NOT NULL,
    is_refund BOOLEAN NOT NULL,
    refund_of_source_key BIGINT,
    refund_of_date DATE,
    refund_matched BOOLEAN
);

DELETE FROM fact_charge
WHERE tenant = :tenant AND period_start BETWEEN :date_from AND :date_to;

INSERT INTO fact_charge
SELECT c.tenant, c.business_date, c.source_key, c.charge_no, c.visit_source_key, c.rx_source_key,
       c.fee_category_code, c.pay_method_code,
       CASE WHEN c.pay_method_code = '07' THEN 'self' ELSE 'insurance' END,
       c.amount, c.insurance_amount, c.self_amount, c.is_refund, c.refund_of_source_key,
       o.business_date,
       CASE WHEN c.is_refund THEN o.source_key IS NOT NULL END
FROM std_charge c
LEFT JOIN std_charge o ON o.tenant = c.tenant AND o.source_key = c.refund_of_source_key
WHERE c.tenant = :tenant AND c.business_date BETWEEN :date_from AND :date_to;

-- Keyed load (marts/runner.py): the keys whose rows may differ from the mart's, i.e. the
-- rows of std_charge written or quarantined by a load from :since on, and the
-- refunds of a changed or quarantined charge.
SELECT tenant, source_key FROM std_charge WHERE tenant = :tenant AND load_id >= :since
UNION
SELECT tenant, source_key FROM quarantine
WHERE dataset = 'charge' AND tenant = :tenant AND load_id >= :since
UNION
-- refunds of a changed or quarantined charge
SELECT c.tenant, c.source_key FROM std_charge c
JOIN (SELECT tenant, source_key FROM std_charge WHERE tenant = :tenant AND load_id >= :since
      UNION ALL
      SELECT tenant, source_key FROM quarantine
      WHERE dataset = 'charge' AND tenant = :tenant AND load_id >= :since) p
  ON p.tenant = c.tenant AND p.source_key = c.refund_of_source_key
WHERE c.tenant = :tenant;
