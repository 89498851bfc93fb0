-- Dimension: the calendar of the business days that hold standardized rows (per tenant, so
-- every share view filters on tenant the same way). Derived from the data, not from the load
-- ranges, so it is the same whatever order the rows arrived in (an offline center's backlog
-- converges). Grain: tenant × day. Range-loaded.
CREATE TABLE IF NOT EXISTS dim_date (
    tenant VARCHAR(40) NOT NULL,
    period_start DATE NOT NULL,
    year INTEGER NOT NULL,
    quarter INTEGER NOT NULL,
    month INTEGER NOT NULL,
    month_start DATE NOT NULL,
    iso_dow INTEGER NOT NULL,
    is_weekend BOOLEAN NOT NULL
);

DELETE FROM dim_date WHERE tenant = :tenant AND period_start BETWEEN :date_from AND :date_to;

INSERT INTO dim_date
SELECT s.tenant, s.d, CAST(EXTRACT(YEAR FROM s.d) AS INTEGER),
       CAST(EXTRACT(QUARTER FROM s.d) AS INTEGER), CAST(EXTRACT(MONTH FROM s.d) AS INTEGER),
       CAST(date_trunc('month', s.d) AS DATE), CAST(EXTRACT(ISODOW FROM s.d) AS INTEGER),
       EXTRACT(ISODOW FROM s.d) >= 6
FROM (
    SELECT tenant, business_date AS d FROM std_person
    WHERE tenant = :tenant AND business_date BETWEEN :date_from AND :date_to
    UNION SELECT tenant, business_date FROM std_outpatient_visit
    WHERE tenant = :tenant AND business_date BETWEEN :date_from AND :date_to
    UNION SELECT tenant, business_date FROM std_diagnosis
    WHERE tenant = :tenant AND business_date BETWEEN :date_from AND :date_to
    UNION SELECT tenant, business_date FROM std_prescription
    WHERE tenant = :tenant AND business_date BETWEEN :date_from AND :date_to
    UNION SELECT tenant, business_date FROM std_prescription_item
    WHERE tenant = :tenant AND business_date BETWEEN :date_from AND :date_to
    UNION SELECT tenant, business_date FROM std_charge
    WHERE tenant = :tenant AND business_date BETWEEN :date_from AND :date_to
    UNION SELECT tenant, business_date FROM std_dispense
    WHERE tenant = :tenant AND business_date BETWEEN :date_from AND :date_to
    UNION SELECT tenant, business_date FROM std_chronic_followup
    WHERE tenant = :tenant AND business_date BETWEEN :date_from AND :date_to
    UNION SELECT tenant, business_date FROM std_family_contract
    WHERE tenant = :tenant AND business_date BETWEEN :date_from AND :date_to
) s;
