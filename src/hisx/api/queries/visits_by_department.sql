-- name: visits_by_department
-- description: Valid outpatient/emergency visits per center and department over a day range
--   (from fact_visit, department names from dim_department).
-- param date_from: date required -- first business day (inclusive)
-- param date_to: date required -- last business day (inclusive)
-- param dept_code: string optional -- only this standard department code (WS 364 department)
-- column tenant: string
-- column dept_code: string
-- column dept_name: string null
-- column visits: integer
-- column first_visits: integer
SELECT v.tenant, v.dept_code, MIN(d.dept_name) AS dept_name,
       COUNT(*) AS visits,
       SUM(CASE WHEN v.first_visit_code = '1' THEN 1 ELSE 0 END) AS first_visits
FROM fact_visit v
LEFT JOIN dim_department d
       ON d.tenant = v.tenant AND d.dept_code_local = v.dept_code_local
WHERE (:tenant = '*' OR v.tenant = :tenant)
  AND v.is_valid
  AND v.period_start BETWEEN :date_from AND :date_to
  AND (:dept_code = '' OR v.dept_code = :dept_code)
GROUP BY v.tenant, v.dept_code
ORDER BY v.tenant, visits DESC, v.dept_code
