#!/usr/bin/env bash
# Dagster webserver + daemon (sensors and schedules live) on 127.0.0.1:3000 over hisx's
# definitions, state under .hisx/ (DAGSTER_HOME=.hisx/dagster, SQLite storage).
set -euo pipefail
cd "$(dirname "$0")/.."
export HISX_HOME=${HISX_HOME:-$PWD/.hisx}
export DAGSTER_HOME=${DAGSTER_HOME:-$HISX_HOME/dagster}
mkdir -p "$DAGSTER_HOME"
# the embedded default instance; refreshed if it predates the run limits (one DuckDB writer)
grep -qs "hisx/warehouse" "$DAGSTER_HOME/dagster.yaml" \
  || cp deploy/dagster.local.yaml "$DAGSTER_HOME/dagster.yaml"
[ -f "$HISX_HOME/source/his.sqlite" ] || .venv/bin/hisx simulate
if [ -z "${HISX_PSEUDO_KEY:-}" ]; then  # demo only: the generated key under .hisx/secrets/
  .venv/bin/python -c "import sys; from pathlib import Path; from hisx.config import \
ensure_demo_pseudo_key; ensure_demo_pseudo_key(Path(sys.argv[1]))" "$HISX_HOME"
  HISX_PSEUDO_KEY=$(cat "$HISX_HOME/secrets/pseudo.key"); export HISX_PSEUDO_KEY
fi
exec .venv/bin/dagster dev -m hisx.orchestration.definitions -h 127.0.0.1 -p "${HISX_UI_PORT:-3000}"
