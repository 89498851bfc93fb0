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
SELECT o.tenant, v.first_day, MAX(o.org_name), MAX(o.division_code), MAX(o.his_vendor)
FROM (SELECT org_code AS tenant, org_name, division_code, his_vendor
      FROM ods_organizations) o
LEFT JOIN (SELECT tenant, MIN(business_date) AS first_day
           FROM std_outpatient_visit
           WHERE tenant = :tenant
           GROUP BY tenant) v ON v.tenant = o.tenant
WHERE o.tenant = :tenant
GROUP BY o.tenant, v.first_day;
