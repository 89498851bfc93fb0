# Sourced by scripts/test.sh and scripts/bench.sh: start/stop every rig component found in
# scripts/rig/*.sh (each defines <name>_up and <name>_down and exports its connection env).
RIG_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RIG_COMPONENTS=()
for f in "$RIG_DIR"/*.sh; do
  n=$(basename "$f" .sh)
  [ "$n" = services ] && continue
  source "$f"
  RIG_COMPONENTS+=("$n")
done
services_up() {
  for n in "${RIG_COMPONENTS[@]}"; do echo "rig: starting $n"; "${n}_up"; done
}
services_down() {
  local rc=$?
  for n in "${RIG_COMPONENTS[@]}"; do "${n}_down" || true; done
  return $rc
}
