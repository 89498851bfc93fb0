#!/usr/bin/env bash
# Runs the whole test suite. The services the tests need (PostgreSQL primary + hot standby,
# the tansu Kafka-protocol broker) are started here on loopback, on their own ports, and
# stopped on exit; the machine's own PostgreSQL on 127.0.0.1:5432 is used as is.
set -euo pipefail
cd "$(dirname "$0")/.."
export HISX_HOME=${HISX_HOME:-$PWD/.hisx}
# the rig lives outside .hisx so that `make clean` / a fresh demo never wipes running servers
export HISX_RIG=${HISX_RIG:-$PWD/.rig}
mkdir -p "$HISX_RIG"
source scripts/rig/services.sh
trap services_down EXIT
services_up
.venv/bin/ruff check src tests bench
set +e
.venv/bin/python -m pytest --durations=20 "$@"
rc=$?
set -e
# pytest exit 5 = no tests collected: that is a failure for CI, not a pass.
exit $rc
