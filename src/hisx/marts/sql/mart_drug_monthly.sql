-- Drug consumption per center and month by NHSA drug code, ranked for top-N questions
-- (amount_rank / quantity_rank: 1 = largest; ties broken by drug_code).
-- Grain: tenant × month × drug_code. Source: fact_prescription_item, dim_drug (name).
CREATE TABLE IF NOT EXISTS mart_drug_monthly (
    tenant VARCHAR(40) NOT NULL,
    period_start DATE NOT NULL,
    drug_code VARCHAR(23) NOT NULL,
    drug_name VARCHAR(50),
    items BIGINT NOT NULL,
    prescriptions BIGINT NOT NULL,
    quantity DOUBLE PRECISION NOT NULL,
    amount NUMERIC(14,2) NOT NULL,
    amount_rank BIGINT NOT NULL,
    quantity_rank BIGINT NOT NULL
);

DELETE FROM mart_drug_monthly
WHERE tenant = :tenant
  AND period_start BETWEEN CAST(date_trunc('month', CAST(:date_from AS DATE)) AS DATE)
                       AND CAST(:date_to AS DATE);

INSERT INTO mart_drug_monthly
SELECT tenant, month_start, drug_code, drug_name, items, prescriptions, quantity, amount,
       ROW_NUMBER() OVER (PARTITION BY tenant, month_start ORDER BY amount DESC, drug_code),
       ROW_NUMBER() OVER (PARTITION BY tenant, month_start ORDER BY quantity DESC, drug_code)
FROM (
    SELECT i.tenant, CAST(date_trunc('month', i.period_start) AS DATE) AS month_start,
           i.drug_code,
           (SELECT MAX(d.drug_name) FROM dim_drug d
            WHERE d.tenant = i.tenant AND d.drug_code = i.drug_code) AS drug_name,
           COUNT(*) AS items, COUNT(DISTINCT i.rx_source_key) AS prescriptions,
           SUM(i.quantity) AS quantity, SUM(i.amount) AS amount
    FROM fact_prescription_item i
    WHERE i.tenant = :tenant
      AND i.period_start >= CAST(date_trunc('month', CAST(:date_from AS DATE)) AS DATE)
      AND i.period_start < CAST(date_trunc('month', CAST(:date_to AS DATE))
                                + INTERVAL '1 month' AS DATE)
    GROUP BY i.tenant, CAST(date_trunc('month', i.period_start) AS DATE), i.drug_code
) s;
