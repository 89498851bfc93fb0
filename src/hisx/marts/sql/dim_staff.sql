-- Dimension: staff, pseudonymous: the center's local work code and role only (no names).
-- Grain: tenant × staff code × role. Full refresh per tenant.
CREATE TABLE IF NOT EXISTS dim_staff (
    tenant VARCHAR(40) NOT NULL,
    period_start DATE,
    staff_code VARCHAR(20) NOT NULL,
    role VARCHAR(20) NOT NULL,
    team_code VARCHAR(20)
);

DELETE FROM dim_staff WHERE tenant = :tenant;

INSERT INTO dim_staff
SELECT tenant, MIN(d), staff_code, role, MAX(team_code)
FROM (
    SELECT tenant, business_date AS d, doctor_code AS staff_code, 'doctor' AS role,
           CAST(NULL AS VARCHAR(20)) AS team_code
    FROM std_outpatient_visit WHERE tenant = :tenant
    UNION ALL
    SELECT tenant, business_date, doctor_code, 'doctor', NULL
    FROM std_prescription WHERE tenant = :tenant
    UNION ALL
    SELECT tenant, business_date, doctor_code, 'doctor', NULL
    FROM std_chronic_followup WHERE tenant = :tenant
    UNION ALL
    SELECT tenant, business_date, doctor_code, 'doctor', team_code
    FROM std_family_contract WHERE tenant = :tenant
    UNION ALL
    SELECT tenant, business_date, pharmacist_code, 'pharmacist', NULL
    FROM std_dispense WHERE tenant = :tenant
) s
GROUP BY tenant, staff_code, role;
