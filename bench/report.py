"""Render BENCHMARKS.md from the logs of `make bench` (bench/results/<name>.log).

Each benchmark prints one JSON object last; this script takes it as is, adds the machine,
date and commit, and writes one section per benchmark with its figures and ratios.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import date
from pathlib import Path

INTRO = """# Benchmarks

Produced by `make bench` (scripts/bench.sh → bench/*.py → bench/report.py). Every figure is
measured in the same run as its baseline and quoted as a ratio; absolute rates on this shared
2-core VM are noisy. Medians of the stated repeats; min and max where the benchmark gives them.
"""


def last_json(text: str) -> dict | None:
    """The last top-level JSON object printed (a line starting with '{')."""
    starts = [i for i, line in enumerate(text.splitlines()) if line.startswith("{")]
    lines = text.splitlines()
    for i in reversed(starts):
        try:
            return json.loads("\n".join(lines[i:]))
        except json.JSONDecodeError:
            continue
    return None


def machine() -> str:
    mem = ""
    try:
        kb = int(next(ln for ln in Path("/proc/meminfo").read_text().splitlines()
                      if ln.startswith("MemTotal")).split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    cpu = platform.processor() or platform.machine()
    return f"{os.cpu_count()} cores ({cpu}){mem}, {platform.platform()}"


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _summary(name: str, d: dict) -> list[str]:
    """A human table for the benchmarks this project knows; the JSON follows in any case."""
    if name == "standardize":
        rows = ["| dataset | hisx rows/s (median, min–max) | per-row jsonschema rows/s | ratio |",
                "|---|---|---|---|"]
        for ds, r in d["results"].items():
            rows.append(f"| {ds} | {r['hisx_rows_s']:,.0f} ({r['hisx_rows_s_min']:,.0f}–"
                        f"{r['hisx_rows_s_max']:,.0f}) | {r['jsonschema_rows_s']:,.0f} | "
                        f"{r['ratio']:.1f}× |")
        return rows + ["", f"Target {d['target']}: **{'met' if d['met'] else 'not met'}**."]
    if name == "extract":
        rows = ["| path | rows/s (median, min–max) | vs COPY | peak RSS MB | longest txn s |",
                "|---|---|---|---|---|"]
        for path, r in d["results"].items():
            ratio = d["ratios"].get(path, 1.0)
            rows.append(f"| {path} | {r['rows_per_s_median']:,} ({r['min']:,}–{r['max']:,}) | "
                        f"{ratio:.2f} | {r['peak_rss_mb']} | {r['longest_txn_s']} |")
        return rows + ["", f"Target {d['target']}: **{'met' if d['met'] else 'not met'}**."]
    if name == "feeds":
        if "clients" not in d:  # before the confluent-kafka producer
            return [f"- raw kafka-python send: {d['raw_kafka_python_msgs_per_s']:,} msg/s",
                    f"- hisx (validation + ledger + publish): {d['hisx_feed_msgs_per_s']:,} "
                    f"msg/s",
                    f"- **ratio {d['ratio']}** (target ≥ 0.5); publish step alone "
                    f"{d['publish_only_ratio']}; enqueue alone "
                    f"{d['hisx_enqueue_msgs_per_s']:,} msg/s"]
        rows = ["| client | raw produce msg/s | hisx publish msg/s | publish / raw | "
                "hisx enqueue + publish msg/s |", "|---|---|---|---|---|"]
        for client, r in d["clients"].items():
            rows.append(f"| {client}{' (default)' if client == d['default_client'] else ''} | "
                        f"{r['raw_msgs_per_s']:,} | {r['hisx_publish_msgs_per_s']:,} | "
                        f"{r['publish_only_ratio']} | {r['hisx_feed_msgs_per_s']:,} |")
        vs_kp = d["hisx_feed_msgs_per_s"] / d["raw_kafka_python_msgs_per_s"]
        return rows + ["", f"- **ratio {d['ratio']}** (hisx end to end / raw producer, default "
                       f"client; target ≥ 0.5, set against kafka-python); hisx end to end is "
                       f"{vs_kp:.2f}× the raw kafka-python producer, and hisx publish with "
                       f"confluent-kafka is **{d['publish_speedup_vs_kafka_python']}×** with "
                       f"kafka-python"] + (["", d["note"]] if d.get("note") else [])
    if name == "pipeline":
        ph = d["hisx_phases_s"]
        return [f"- source: {d['source']['rows']:,} rows ({d['source']['centers']} centers × "
                f"{d['source']['months']} month)",
                f"- hisx end to end: {d['hisx_rows_per_s']:,} rows/s (extract "
                f"{ph['extract_s']['median']} s, standardize {ph['standardize_s']['median']} s, "
                f"marts {ph['marts_s']['median']} s); naive copy: {d['naive_rows_per_s']:,} rows/s",
                f"- **ratio hisx/naive {d['ratio_hisx_vs_naive']}** — hisx standardizes, "
                "quarantines, writes the feed ledger and loads every mart; the naive copy none",
                f"- peak RSS: hisx {d['peak_rss_mb']['hisx']['median']:.0f} MB, naive "
                f"{d['peak_rss_mb']['naive']['median']:.0f} MB"]
    if name.startswith("city") and "results" in d:
        return _city(d)
    if name == "city_incremental":
        return _incremental(d["incremental"], d["centers"], d.get("note", ""))
    if name == "growth":
        return _growth(d)
    if name == "api":
        rows = ["| mode | query | conns | req/s | p50 ms | p99 ms |", "|---|---|---|---|---|---|"]
        for mode, v in d["results"].items():
            for tgt, cs in v.items():
                for c, x in cs.items():
                    rows.append(f"| {mode} | {tgt} | {c} | {x.get('rps')} | {x.get('p50_ms')} | "
                                f"{x.get('p99_ms')} |")
        met = d.get("target_p99_lt_50ms_at_16_mart_default_mode")
        return rows + ["", f"Target p99 < 50 ms at 16 connections (mart, default mode): "
                           f"**{'met' if met else 'not met'}**."]
    return []


def _city(d: dict) -> list[str]:
    src = d["source"]
    out = [f"- source: {src['total_rows']:,} rows, {src['centers']} centers × 1 month "
           f"({src['rows'].get('registrations', 0):,} visits), read from the hot standby; "
           f"median of {d['reps']}",
           "", "| variant | rows/s (median, min–max) | seconds | peak RSS MB | longest source txn s |",
           "|---|---|---|---|---|"]
    for v, r in d["results"].items():
        rs = r["rows_per_s"]
        out.append(f"| {v} | {rs['median']:,} ({rs['min']:,}–{rs['max']:,}) | "
                   f"{r['total_s']['median']} | {r['peak_rss_mb']['median']:.0f} | "
                   f"{r['longest_txn_s']} |")
    for v, r in d["results"].items():
        for bad in r.get("incomplete_runs") or []:
            out.append(f"\n{v} run {bad.get('rep', '?')} read {bad['rows']:,} of "
                       f"{src['total_rows']:,} rows: incomplete, left out of the medians.")
    out += ["", "| ratio | value |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in d["ratios"].items()]
    if d.get("note"):
        out += ["", d["note"]]
    if d.get("incremental"):
        out += _incremental(d["incremental"], src["centers"], "")
    return out


def _hour_line(what: str, h: dict, reps: int) -> str:
    phases = ", ".join(f"{k[:-2]} {h[k]['median']}" for k in (
        "replay_wait_s", "probe_s", "extract_s", "standardize_s", "marts_s", "publish_s") if k in h)
    visits = ("/".join(f"{v:,}" for v in h["visits_per_hour"]) if "visits_per_hour" in h
              else f"{h['visits_in_hour']:,}")
    starts = f", starting {', '.join(h['starts'])}" if "starts" in h else ""
    return (f"- {what} ({visits} visits{starts}; first hour {h['rows_read']:,} source rows, "
            f"{h['published']:,} messages published to the broker): "
            f"**{h['total_s']['median']} s** end to end (min {h['total_s']['min']}, max "
            f"{h['total_s']['max']}; median of {reps}; target < 30 s) — {phases} s")


def _incremental(inc: dict, centers: int, note: str) -> list[str]:
    h, z = inc["hour"], inc["no_change"]
    late = ([_hour_line(f"late-afternoon hour over {centers} centers", inc["late_hour"],
                        inc["late_reps"])] if inc.get("late_hour") else [])
    return ([note, ""] if note else []) + [
        _hour_line(f"incremental peak hour over {centers} centers", h, inc["reps"]), *late,
        f"- no-change cycle (the sensor's probe finds nothing): **{z['total_s']['median']} s** "
        f"(min {z['total_s']['min']}, max {z['total_s']['max']}; target < 5 s)"] + _backfill(inc)


def _backfill(inc: dict) -> list[str]:
    """The backfill the hours run on (single run): time, rows/s and peak RSS per phase."""
    b = inc.get("backfill")
    if not b:
        return []
    total = b["extract_s"] + b["standardize_s"] + b["marts_s"]
    peaks = b.get("peak_rss_mb_by_phase", {})
    top = max(peaks.items(), key=lambda kv: kv[1]) if peaks else None
    return [f"- the backfill before the hours (single run): {b['rows']:,} rows in {total:,.0f} s "
            f"({b['rows'] / total:,.0f} rows/s; extract {b['extract_s']:,.0f}, standardize "
            f"{b['standardize_s']:,.0f}, marts {b['marts_s']:,.0f} s)"
            + (f", peak RSS {top[1]:,} MB in {top[0]}" if top else "")]


def _growth(d: dict) -> list[str]:
    out = [f"![growth curve]({d['png']})", "",
           "| centers | rows | COPY s | hisx s | hisx rows/s | share of COPY | peak RSS MB | "
           "s/row vs smallest of its run | longest txn s | measured in |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for p in d["points"]:
        out.append(f"| {p['centers']} | {p['rows']:,} | {p['copy_s']} | {p['hisx_s']} | "
                   f"{p['hisx_rows_per_s']:,} | {p['share_of_copy']} | {p['hisx_rss_mb']} | "
                   f"{p['sec_per_row_vs_smallest']} | {p['longest_txn_s']} | "
                   f"{p.get('from', 'this run')} |")
    if d.get("note"):
        out += ["", d["note"]]
    return out


def previous_sections(path: Path) -> tuple[dict[str, str], str]:
    """The ``## name`` sections of an earlier BENCHMARKS.md and the run they came from."""
    if not path.exists():
        return {}, ""
    text = path.read_text(encoding="utf-8")
    run = " ".join(ln[2:] for ln in text.splitlines()
                   if ln.startswith(("- Date:", "- Commit:")) and not ln.startswith("- Date: (")
                   )[:80]
    sections: dict[str, str] = {}
    parts = text.split("\n## ")
    for part in parts[1:]:
        name, _, body = part.partition("\n")
        sections[name.strip()] = body.strip("\n")
    return sections, run


def main(results_dir: str, previous: str | None = None) -> None:
    """Render the logs in ``results_dir``; a benchmark not run this time keeps its section from
    ``previous`` (the current BENCHMARKS.md), marked with the run it came from, so a partial
    ``BENCHES=…`` run never drops the other figures."""
    out = [INTRO, f"- Machine: {machine()}", f"- Date: {date.today().isoformat()}",
           f"- Commit: {commit()}", ""]
    changes = Path(__file__).with_name("changes.md")
    if changes.exists():  # what was changed to reach the figures (kept by hand, beside the code)
        out += [changes.read_text(encoding="utf-8").strip(), ""]
    old, old_run = previous_sections(Path(previous)) if previous else ({}, "")
    old = {k: v for k, v in old.items() if not k.startswith("What was changed")}
    logs = {log.stem: log for log in Path(results_dir).glob("*.log")}
    for name in sorted(set(logs) | set(old)):
        if name not in logs:
            body = old[name]
            if not body.startswith("_Not re-run"):
                body = f"_Not re-run in this run: figures from {old_run or 'an earlier run'}._\n\n" + body
            out += [f"## {name}\n", body, ""]
            continue
        data = last_json(logs[name].read_text(encoding="utf-8", errors="replace"))
        out.append(f"## {name}\n")
        if data is None:
            out.append("No result: the benchmark failed (see its log).\n")
            continue
        out += _summary(name, data) + [""]
        out.append("<details><summary>raw result</summary>\n")
        out.append("```json\n" + json.dumps(data, indent=2, ensure_ascii=False) + "\n```\n")
        out.append("</details>\n")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench/results",
         sys.argv[2] if len(sys.argv) > 2 else None)
