#!/usr/bin/env bash
# make bench: every benchmark in bench/, each printing one JSON object on its last line,
# collected under bench/results/ and rendered into BENCHMARKS.md with the machine and date.
# The services the benchmarks need (PG primary + standby, tansu) are started as for tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export HISX_HOME=${HISX_HOME:-$PWD/.hisx}
# The benchmarks' own rig, on their own ports, kept between runs (the generated city sources
# live in it: bench/.cache/rig), so a test run's drills never stop a benchmark's standby.
export HISX_RIG=${HISX_BENCH_RIG:-$PWD/bench/.cache/rig}
export HISX_PG_RIG_KEEP=1
export HISX_PG_PRIMARY_PORT=${HISX_BENCH_PG_PORT:-26432}
export HISX_PG_STANDBY_PORT=$((HISX_PG_PRIMARY_PORT + 1))
export HISX_KAFKA_PORT=${HISX_BENCH_KAFKA_PORT:-29192}
export HISX_PSEUDO_KEY=${HISX_PSEUDO_KEY:-bench-only-key-0000000000000000}
mkdir -p "$HISX_RIG" bench/results
source scripts/rig/services.sh
trap services_down EXIT
services_up
PY=.venv/bin/python
# a command given: run it in the rig's environment instead of the benchmarks
# (e.g. `bash scripts/bench.sh .venv/bin/python bench/profile_hour.py --centers 250`)
if (($#)); then "$@"; exit; fi
BENCHES=${BENCHES:-city growth pipeline standardize feeds extract api}
# city: 250 centers x 1 month (≈39 M rows), every variant, median of CITY_REPS, + incremental;
# growth: hisx alone at 1/8, 1/4, 1/2 and the whole city (GROWTH_CENTERS). Generation of each
# size is cached in the bench rig. A smaller CITY_CENTERS gives a quick run.
CITY_CENTERS=${CITY_CENTERS:-250}
CITY_REPS=${CITY_REPS:-3}
GROWTH_CENTERS=${GROWTH_CENTERS:-31 62 125 250}
run() {  # run NAME ARGS...: the log ends with the benchmark's JSON result
  local name=$1; shift
  [[ " $BENCHES " == *" $name "* ]] || return 0
  echo "bench: $name $*"
  if "$PY" "bench/bench_$name.py" "$@" > "bench/results/$name.log" 2>&1; then
    echo "bench: $name done"
  else
    echo "bench: $name FAILED (see bench/results/$name.log)"; tail -5 "bench/results/$name.log"
  fi
}
run city --centers "$CITY_CENTERS" --reps "$CITY_REPS" --incremental
# shellcheck disable=SC2086
run growth --centers $GROWTH_CENTERS
run pipeline --visits 18000 --reps 3
run standardize --rows 50000 --repeats 3
run feeds --messages 30000 --reps 3
run extract
run api --seconds 5
$PY bench/report.py bench/results BENCHMARKS.md > BENCHMARKS.md.new && mv BENCHMARKS.md.new BENCHMARKS.md
echo "wrote BENCHMARKS.md"
