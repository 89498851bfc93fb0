-- Dimension: the calendar of the loaded business days (per tenant, so every share view
-- filters on tenant the same way). Grain: tenant × day. Range-loaded.
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
SELECT :tenant, d, CAST(EXTRACT(YEAR FROM d) AS INTEGER), CAST(EXTRACT(QUARTER FROM d) AS INTEGER),
       CAST(EXTRACT(MONTH FROM d) AS INTEGER), CAST(date_trunc('month', d) AS DATE),
       CAST(EXTRACT(ISODOW FROM d) AS INTEGER), EXTRACT(ISODOW FROM d) >= 6
FROM (SELECT CAST(g.t AS DATE) AS d
      FROM generate_series(CAST(CAST(:date_from AS DATE) AS TIMESTAMP),
                           CAST(CAST(:date_to AS DATE) AS TIMESTAMP), INTERVAL '1 day') AS g(t)) s;
