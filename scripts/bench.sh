#!/usr/bin/env bash
# make bench: every benchmark in bench/, each printing one JSON object on its last line,
# collected under bench/results/ and rendered into BENCHMARKS.md with the machine and date.
# The services the benchmarks need (PG primary + standby, tansu) are started as for tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export HISX_HOME=${HISX_HOME:-$PWD/.hisx}
export HISX_RIG=${HISX_RIG:-$PWD/.rig}
export HISX_PSEUDO_KEY=${HISX_PSEUDO_KEY:-bench-only-key-0000000000000000}
mkdir -p "$HISX_RIG" bench/results
source scripts/rig/services.sh
trap services_down EXIT
services_up
PY=.venv/bin/python
BENCHES=${BENCHES:-pipeline standardize feeds extract api}
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
run pipeline --visits 18000 --reps 3
run standardize --rows 50000 --repeats 3
run feeds --messages 30000 --reps 3
run extract
run api --seconds 5
$PY bench/report.py bench/results > BENCHMARKS.md
echo "wrote BENCHMARKS.md"
