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


def main(results_dir: str) -> None:
    out = [INTRO, f"- Machine: {machine()}", f"- Date: {date.today().isoformat()}",
           f"- Commit: {commit()}", ""]
    for log in sorted(Path(results_dir).glob("*.log")):
        data = last_json(log.read_text(encoding="utf-8", errors="replace"))
        out.append(f"## {log.stem}\n")
        if data is None:
            out.append("No result: the benchmark failed (see its log).\n")
            continue
        out.append("```json\n" + json.dumps(data, indent=2, ensure_ascii=False) + "\n```\n")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench/results")
