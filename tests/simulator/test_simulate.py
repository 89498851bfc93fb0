"""Counts, amounts, row versions, determinism, offline convergence, appends, DDL, PostgreSQL."""

from __future__ import annotations

import sqlite3
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from simhelpers import TINY, read_table, table_hash

from hisx.simulator import Manifest, OfflineWindow, append_activity, ddl, simulate
from hisx.simulator.schema import TABLES, primary_key

NAMES = [t.name for t in TABLES]


def _all_versions(path) -> pd.DataFrame:
    with sqlite3.connect(path) as con:
        parts = [pd.read_sql_query(f"SELECT '{n}' AS t, updated_at, row_version FROM {n}", con)
                 for n in NAMES]
    return pd.concat(parts, ignore_index=True)


def test_manifest_counts_equal_table_counts(small_source):
    path, m = small_source
    with sqlite3.connect(path) as con:
        for name in NAMES:
            actual = dict(con.execute(f"SELECT org_code, COUNT(*) FROM {name} GROUP BY org_code"))
            assert actual == m.counts[name], name
    assert Manifest.from_json(m.to_json()).counts == m.counts
    assert len(m.centers) == 3 and {c["his_vendor"] for c in m.centers} == {
        "vendor_a", "vendor_b", "vendor_c"}


def test_amounts_add_up(small_source):
    path, _ = small_source
    items = read_table(path, "prescription_items")
    assert np.allclose(items.amount, (items.quantity * items.unit_price).round(2))
    rx = read_table(path, "prescriptions").set_index("rx_id")
    per_rx = items.groupby("rx_id").amount.sum().round(2)
    assert np.allclose(rx.total_amount, per_rx.reindex(rx.index))
    ch = read_table(path, "charges")
    refunds = ch[ch.refund_of.notna()]
    assert 0.003 < len(refunds) / len(ch) < 0.03
    orig = ch.set_index("charge_id").loc[refunds.refund_of.astype(int)]
    assert np.allclose(refunds.amount.to_numpy(), -orig.amount.to_numpy())
    assert (refunds.amount < 0).all() and (ch[ch.refund_of.isna()].amount > 0).all()
    assert np.allclose(ch.amount, (ch.insurance_amount + ch.self_amount).round(2))
    drug = ch[ch.rx_id.notna() & ch.refund_of.isna()].groupby("rx_id").amount.sum().round(2)
    assert np.allclose(drug.to_numpy(), rx.loc[drug.index.astype(int), "total_amount"].to_numpy())


def test_shape_is_plausible(small_source):
    path, m = small_source
    reg = read_table(path, "registrations")
    t = pd.to_datetime(reg.reg_time)
    vendors = {c["org_code"]: c["his_vendor"] for c in m.centers}
    emergency = {"vendor_a": "EM", "vendor_b": "急诊", "vendor_c": "2"}
    cancelled = {"vendor_a": "C", "vendor_b": "退号", "vendor_c": "9"}
    em = reg.visit_type == reg.org_code.map(lambda o: emergency[vendors[o]])
    assert 0.01 < em.mean() < 0.04
    assert 0.01 < (reg.status == reg.org_code.map(lambda o: cancelled[vendors[o]])).mean() < 0.03
    hours = t[~em].dt.hour + t[~em].dt.minute / 60
    assert ((hours >= 8) & (hours <= 16.5)).mean() > 0.97
    weekday = t[~em].dt.day_of_week < 5
    per_day = t[~em].dt.date.value_counts()
    wd_days = pd.to_datetime(pd.Series(per_day.index)).dt.day_of_week < 5
    assert per_day[wd_days.to_numpy()].mean() > 2 * per_day[~wd_days.to_numpy()].mean()
    assert weekday.mean() > 0.85
    per_center_month = len(reg) / (3 * 2)
    assert 2400 < per_center_month < 3400


def test_row_version_unique_and_follows_arrival(small_source):
    path, m = small_source
    v = _all_versions(path)
    assert v.row_version.is_unique
    v = v.sort_values("row_version")
    ts = pd.to_datetime(v.updated_at)
    assert ts.is_monotonic_increasing
    assert m.row_version == {"min": int(v.row_version.min()), "max": int(v.row_version.max())}


def test_determinism(tmp_path):
    a, b, c = (tmp_path / f"{x}.db" for x in "abc")
    simulate(f"sqlite:///{a}", seed=11, **TINY)
    simulate(f"sqlite:///{b}", seed=11, **TINY)
    simulate(f"sqlite:///{c}", seed=12, **TINY)
    for name in NAMES:
        assert table_hash(a, name) == table_hash(b, name), name
    assert table_hash(a, "registrations") != table_hash(c, "registrations")
    assert table_hash(a, "patients") != table_hash(c, "patients")


def test_offline_window_converges(tmp_path):
    base, off = tmp_path / "base.db", tmp_path / "off.db"
    window = OfflineWindow.parse("gaohang:2026-08-12T08:00:24")
    m0 = simulate(f"sqlite:///{base}", seed=5, **TINY)
    m1 = simulate(f"sqlite:///{off}", seed=5, offline=[window], **TINY)
    audit = ("updated_at", "row_version")
    for name in NAMES:
        assert table_hash(base, name, audit) == table_hash(off, name, audit), name
    assert m0.counts == m1.counts
    org = m1.offline[0]["org_code"]
    assert org == m1.centers[0]["org_code"] and sum(m1.offline[0]["delayed"].values()) > 100
    start, end = pd.Timestamp(window.start), pd.Timestamp(window.end)
    moved = 0
    for name in NAMES:
        pk = primary_key(next(t for t in TABLES if t.name == name))
        a = read_table(base, name).set_index(pk)
        b = read_table(off, name).set_index(pk)
        ua, ub = pd.to_datetime(a.updated_at), pd.to_datetime(b.updated_at)
        inside = (a.org_code == org) & (ua >= start) & (ua < end)
        assert (ub[inside] >= end).all(), name
        moved += int(inside.sum())
        assert (ua[~inside] == ub[~inside]).all(), name
        # backlog rows are newer than everything other centers committed during the window
        others = b[(b.org_code != org) & (ub >= start) & (ub < end)]
        if inside.any() and len(others):
            assert b.row_version[inside].min() > others.row_version.max(), name
    assert moved == sum(m1.offline[0]["delayed"].values())
    v = _all_versions(off).sort_values("row_version")
    assert v.row_version.is_unique and pd.to_datetime(v.updated_at).is_monotonic_increasing


def test_offline_window_parse_errors():
    w = OfflineWindow.parse("sanlin:2026-09-01T13:30:6.5")
    assert (w.org_code, w.start, w.hours) == ("sanlin", datetime(2026, 9, 1, 13, 30), 6.5)
    with pytest.raises(ValueError, match="CENTER:YYYY-MM-DDTHH:MM:HOURS"):
        OfflineWindow.parse("gaohang-2026-08-12")
    with pytest.raises(ValueError, match="unknown center"):
        simulate("sqlite://", offline=[OfflineWindow.parse("nowhere:2026-08-12T08:00:24")],
                 **TINY)


def test_append_activity_adds_newer_rows_and_updates(tmp_path):
    path = tmp_path / "src.db"
    url = f"sqlite:///{path}"
    m0 = simulate(url, seed=3, **TINY)
    before = read_table(path, "registrations").set_index("reg_id")
    m1 = append_activity(url, start=datetime(2026, 9, 1, 0, 0), hours=48, seed=99,
                         visits_per_month=600)
    assert m1.kind == "append" and m1.row_version["min"] > m0.row_version["max"]
    with sqlite3.connect(path) as con:
        for name, per_org in m1.counts.items():
            n = con.execute(f"SELECT COUNT(*) FROM {name} WHERE row_version > ?",
                            (m0.row_version["max"],)).fetchone()[0]
            upd = sum(m1.updated.get(name, {}).values())
            assert n == sum(per_org.values()) + upd, name
    after = read_table(path, "registrations").set_index("reg_id")
    assert sum(m1.counts["registrations"].values()) > 20
    changed = after.loc[before.index][after.loc[before.index].row_version != before.row_version]
    assert len(changed) == sum(m1.updated["registrations"].values()) > 0
    assert (changed.row_version > m0.row_version["max"]).all()
    assert (changed.status != before.loc[changed.index].status).all()
    ch = read_table(path, "charges")
    refunds = ch[ch.refund_of.notna() & ch.reg_id.isin(changed.index)]
    assert len(refunds) == len(changed)
    assert refunds.refund_of.isin(ch.charge_id).all()
    v = _all_versions(path)
    assert v.row_version.is_unique
    assert pd.to_datetime(v.sort_values("row_version").updated_at).is_monotonic_increasing


def test_mssql_ddl_compiles():
    stmts = ddl("mssql")
    text = "\n".join(stmts)
    assert text.count("CREATE TABLE") == len(TABLES)
    assert "ROWVERSION" in text and "DATETIME2(7)" in text
    assert "CREATE UNIQUE INDEX ix_registrations_rv" in text
    assert "ROWVERSION" not in "\n".join(ddl("postgresql"))


@pytest.mark.postgres
def test_postgresql_copy_load(pg_database):
    m = simulate(pg_database, seed=1, centers=1, months=1, visits_per_month=2000, progress=False)
    eng = sa.create_engine(pg_database)
    with eng.connect() as con:
        for name in NAMES:
            n = con.execute(sa.text(f"SELECT COUNT(*) FROM {name}")).scalar()
            assert n == sum(m.counts[name].values()), name
        row = con.execute(sa.text(
            "SELECT name, gender, birth_date, reg_time, amount FROM patients p "
            "JOIN registrations r USING (patient_id) JOIN charges c USING (reg_id) "
            "WHERE c.refund_of IS NULL ORDER BY c.charge_id LIMIT 1")).one()
        assert row.name and row.reg_time.year == 2026 and row.amount > 0
        dup = con.execute(sa.text("SELECT COUNT(*) FROM (SELECT row_version FROM registrations "
                                  "UNION ALL SELECT row_version FROM charges) x")).scalar()
        uniq = con.execute(sa.text("SELECT COUNT(DISTINCT row_version) FROM (SELECT row_version "
                                   "FROM registrations UNION ALL SELECT row_version FROM charges) x")
                           ).scalar()
        assert dup == uniq
    eng.dispose()
    m2 = append_activity(pg_database, start=datetime(2026, 9, 1), hours=24, seed=2, centers=1,
                         visits_per_month=2000)
    assert m2.row_version["min"] > m.row_version["max"]


def test_cli_helpers_write_manifest_next_to_sqlite(tmp_path):
    import argparse

    from hisx.simulator import add_simulate_arguments, cli_simulate

    parser = argparse.ArgumentParser()
    add_simulate_arguments(parser)
    db = tmp_path / "demo" / "source.db"
    args = parser.parse_args(["--url", f"sqlite:///{db}", "--centers", "1", "--months", "1",
                              "--visits-per-month", "300", "--offline",
                              "gaohang:2026-08-05T09:00:8", "--no-progress"])
    m = cli_simulate(args)
    saved = Manifest.from_json(db.with_suffix(".manifest.json"))
    assert saved.counts == m.counts and saved.offline[0]["hours"] == 8.0
    assert saved.params["visits_per_month"] == 300
