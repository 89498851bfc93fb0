#!/usr/bin/env bash
# Dagster webserver + daemon on 127.0.0.1:3000 over hisx's definitions, state under .hisx/.
set -euo pipefail
cd "$(dirname "$0")/.."
export HISX_HOME=${HISX_HOME:-$PWD/.hisx}
export DAGSTER_HOME=${DAGSTER_HOME:-$HISX_HOME/dagster}
mkdir -p "$DAGSTER_HOME"
[ -f "$DAGSTER_HOME/dagster.yaml" ] || cp deploy/dagster.local.yaml "$DAGSTER_HOME/dagster.yaml"
[ -f "$HISX_HOME/source/his.sqlite" ] || .venv/bin/hisx simulate
exec .venv/bin/dagster dev -m hisx.orchestration.definitions -h 127.0.0.1 -p "${HISX_UI_PORT:-3000}"
