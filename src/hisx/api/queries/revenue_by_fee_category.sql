-- name: revenue_by_fee_category
-- description: Gross, refunded and net revenue per center and fee category over a day range
--   (from fact_charge; refunds are negative amounts referencing the original charge).
-- param date_from: date required -- first business day (inclusive)
-- param date_to: date required -- last business day (inclusive)
-- column tenant: string
-- column fee_category_code: string
-- column charges: integer
-- column gross_amount: number
-- column refund_amount: number
-- column net_amount: number
SELECT tenant, fee_category_code,
       SUM(CASE WHEN is_refund THEN 0 ELSE 1 END) AS charges,
       SUM(CASE WHEN is_refund THEN 0 ELSE amount END) AS gross_amount,
       SUM(CASE WHEN is_refund THEN amount ELSE 0 END) AS refund_amount,
       SUM(amount) AS net_amount
FROM fact_charge
WHERE (:tenant = '*' OR tenant = :tenant)
  AND period_start BETWEEN :date_from AND :date_to
GROUP BY tenant, fee_category_code
ORDER BY tenant, fee_category_code
