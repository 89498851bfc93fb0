-- Dimension: the community health service centers (tenants).
-- Grain: tenant. Full refresh per tenant (from ods_organizations; names are not personal data).
-- period_start = first business day with an outpatient visit (NULL before the first visit).
CREATE TABLE IF NOT EXISTS dim_center (
    tenant VARCHAR(40) NOT NULL,
    period_start DATE,
    center_name VARCHAR(100),
    division_code VARCHAR(6),
    his_vendor VARCHAR(20)
);

DELETE FROM dim_center WHERE tenant = :tenant;

INSERT INTO dim_center
SELECT o.org_code, (SELECT MIN(v.business_date) FROM std_outpatient_visit v
                    WHERE v.tenant = :tenant),
       MAX(o.org_name), MAX(o.division_code), MAX(o.his_vendor)
FROM ods_organizations o
WHERE o.org_code = :tenant
GROUP BY o.org_code;
