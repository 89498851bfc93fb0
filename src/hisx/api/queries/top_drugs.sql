-- name: top_drugs
-- description: The top-N drugs by amount per center in one month (from mart_drug_monthly).
-- param month: date required -- any day of the month
-- param top: integer optional default 10 min 1 max 100 -- how many drugs per center
-- column tenant: string
-- column period_start: date
-- column drug_code: string
-- column drug_name: string null
-- column amount: number
-- column quantity: number
-- column amount_rank: integer
SELECT tenant, period_start, drug_code, drug_name, amount, quantity, amount_rank
FROM mart_drug_monthly
WHERE (:tenant = '*' OR tenant = :tenant)
  AND period_start = CAST(date_trunc('month', CAST(:month AS DATE)) AS DATE)
  AND amount_rank <= :top
ORDER BY tenant, amount_rank, drug_code
