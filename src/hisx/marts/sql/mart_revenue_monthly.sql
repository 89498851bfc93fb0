-- Revenue per center and month by fee category and payment method, from mart_revenue_daily.
-- A dirty day range re-loads the whole months it touches.
-- Grain: tenant × month × fee_category_code × pay_method_code.
CREATE TABLE IF NOT EXISTS mart_revenue_monthly (
    tenant VARCHAR(40) NOT NULL,
    period_start DATE NOT NULL,
    fee_category_code VARCHAR(2) NOT NULL,
    pay_method_code VARCHAR(2) NOT NULL,
    pay_class VARCHAR(10) NOT NULL,
    charges BIGINT NOT NULL,
    refunds BIGINT NOT NULL,
    gross_amount NUMERIC(14,2) NOT NULL,
    refund_amount NUMERIC(14,2) NOT NULL,
    net_amount NUMERIC(14,2) NOT NULL,
    insurance_amount NUMERIC(14,2) NOT NULL,
    self_amount NUMERIC(14,2) NOT NULL
);

DELETE FROM mart_revenue_monthly
WHERE tenant = :tenant
  AND period_start BETWEEN CAST(date_trunc('month', CAST(:date_from AS DATE)) AS DATE)
                       AND CAST(:date_to AS DATE);

INSERT INTO mart_revenue_monthly
SELECT tenant, CAST(date_trunc('month', period_start) AS DATE), fee_category_code,
       pay_method_code, MAX(pay_class), SUM(charges), SUM(refunds), SUM(gross_amount),
       SUM(refund_amount), SUM(net_amount), SUM(insurance_amount), SUM(self_amount)
FROM mart_revenue_daily
WHERE tenant = :tenant
  AND period_start >= CAST(date_trunc('month', CAST(:date_from AS DATE)) AS DATE)
  AND period_start < CAST(date_trunc('month', CAST(:date_to AS DATE)) + INTERVAL '1 month' AS DATE)
GROUP BY tenant, CAST(date_trunc('month', period_start) AS DATE), fee_category_code,
         pay_method_code;
